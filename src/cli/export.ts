/** `qvm export`: a VM as a libvirt domain, printed, written to a file, or defined at a libvirt URI. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { PermissionError, UsageError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import { Deadline } from "../vm/env.ts";
import { exportDomain, exportToLibvirt } from "../vm/libvirt.ts";
import { progressModule } from "./_format.ts";
import { formatSize } from "./_size.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "export",
  summary: "export a VM as libvirt domain XML, or define it at a libvirt URI",
  description:
    "Config parts libvirt has no element for go into <qemu:commandline> (listed on stderr). With\n" +
    "--to, the XML goes to `virsh -c URI define` on its stdin, under the VM's lock (a second export\n" +
    "of the VM finds the domain defined and fails): disks, kernel and shares must exist at the same\n" +
    "paths on that host, and a domain of the same name must not. With --copy-storage (a stopped VM)\n" +
    "each disk becomes a volume in --pool there, uploaded through libvirt, and the domain names the\n" +
    "volumes; an overlay travels with the image it stands on as a second volume, or as one with\n" +
    "--flatten. A failure or Ctrl-C deletes the volumes made (exit 130, or 143 on SIGTERM).",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {
    format: {
      type: "string",
      value: "FORMAT",
      description: "libvirt (the default and only format)",
      complete: ["libvirt"],
    },
    output: {
      type: "string",
      short: "o",
      value: "FILE",
      description: "write the XML to FILE instead of stdout",
      complete: "file",
    },
    to: {
      type: "string",
      value: "URI",
      description: "define the domain at this libvirt URI (e.g. qemu+ssh://host/system)",
    },
    start: { type: "boolean", description: "with --to: start the domain after defining it" },
    "copy-storage": {
      type: "boolean",
      description: "with --to: upload the disks into volumes of a storage pool there",
    },
    pool: {
      type: "string",
      value: "NAME",
      description: "with --copy-storage: the storage pool (default: default)",
    },
    flatten: {
      type: "boolean",
      description: "with --copy-storage: one self-contained volume per overlay",
    },
    quiet: { type: "boolean", short: "q", description: "no progress line on a terminal" },
  },
  examples: [
    "qvm export web1 --format libvirt -o web1.xml",
    "qvm export web1 --to qemu+ssh://root@host2/system --start",
    "qvm export web1 --to qemu+ssh://root@host2/system --copy-storage --pool default --start",
  ],
};

/** How long `export --to` waits for another command holding the VM's lock. */
const LOCK_WAIT_MS = 60_000;

/** Writes `-o FILE`; a failure is one line (exit 4 for a permission, else 3). */
async function writeOutput(file: string, text: string): Promise<void> {
  try {
    await Deno.writeTextFile(file, text);
  } catch (err) {
    const message = `export: cannot write ${file}: ${(err as Error).message.split(":")[0]}`;
    if (err instanceof Deno.errors.PermissionDenied) throw new PermissionError(message);
    throw new UsageError(message);
  }
}

function flagsOf(args: ParsedArgs) {
  const format = (args.values.format as string | undefined) ?? "libvirt";
  if (format !== "libvirt") {
    throw new UsageError(`export: unknown --format '${format}' (the one format is libvirt)`);
  }
  const uri = args.values.to as string | undefined;
  if (uri === "") throw new UsageError("export: --to needs a libvirt URI, e.g. qemu:///system");
  const copy = args.values["copy-storage"] === true;
  const pool = args.values.pool as string | undefined;
  for (const [flag, given] of [["start", args.values.start], ["copy-storage", copy]] as const) {
    if (given && uri === undefined) throw new UsageError(`export: --${flag} needs --to URI`);
  }
  for (const [flag, given] of [["pool", pool !== undefined], ["flatten", args.values.flatten]]) {
    if (given && !copy) throw new UsageError(`export: --${flag} needs --copy-storage`);
  }
  if (pool === "") throw new UsageError("export: --pool needs a storage pool name");
  return {
    uri,
    start: args.values.start === true,
    copyStorage: copy
      ? { pool: pool ?? "default", flatten: args.values.flatten === true }
      : undefined,
    output: args.values.output as string | undefined,
  };
}

/** Prints or writes the XML, or defines (and starts) the domain at `--to`. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const flags = flagsOf(args);
  const vm = ctx.store.require(args.positionals[0]);
  if (flags.uri === undefined) {
    const { made, warnings } = await exportDomain(ctx, vm);
    if (flags.output !== undefined) await writeOutput(flags.output, made.xml);
    for (const warning of warnings) ctx.warn(warning);
    if (ctx.json) {
      ctx.outJson({ id: vm.id, name: vm.name, xml: made.xml, passed_through: made.passedThrough });
    } else if (flags.output === undefined) ctx.out(made.xml);
    return 0;
  }
  return await defineAt(ctx, vm, { ...flags, uri: flags.uri, quiet: args.values.quiet === true });
}

/** `--to URI`: defines (and starts) the domain there, copying the disks with --copy-storage. */
async function defineAt(
  ctx: Context,
  vm: VmRecord,
  flags: ReturnType<typeof flagsOf> & { uri: string; quiet: boolean },
): Promise<number> {
  const { uri, output } = flags;
  const { Progress } = await progressModule();
  const progress = new Progress(ctx, { quiet: flags.quiet, interrupts: false });
  let done;
  try {
    done = await exportToLibvirt(ctx, vm, {
      uri,
      start: flags.start,
      copyStorage: flags.copyStorage,
      deadline: Deadline.in(LOCK_WAIT_MS),
      onProgress: (p) =>
        progress.show(() =>
          `copying ${vm.name} to pool '${flags.copyStorage?.pool}': ${p.volume} · ` +
          progress.dim(`${formatSize(p.done)} of ${formatSize(p.total)}`)
        ),
    });
  } finally {
    progress.done();
  }
  if (output !== undefined) await writeOutput(output, done.made.xml);
  for (const warning of done.warnings) ctx.warn(warning);
  if (done.volumes.length > 0) {
    ctx.note(`volumes made in pool '${flags.copyStorage?.pool}': ${done.volumes.join(", ")}`);
  }
  if (done.needed.length > 0) {
    ctx.note(
      `these files must exist at the same paths where ${uri} runs: ${done.needed.join(", ")}`,
    );
  }
  if (ctx.json) {
    const { started, volumes } = done;
    ctx.outJson({ id: vm.id, name: vm.name, uri, defined: true, started, volumes });
  } else ctx.out(`${done.started ? "defined and started" : "defined"} ${vm.name} at ${uri}`);
  return 0;
}
