/** `qvm export`: a VM as a libvirt domain, printed, written to a file, or defined at a libvirt URI. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { PermissionError, QvmError, UsageError } from "../errors.ts";
import { exists, vmPaths } from "../vm/paths.ts";
import type { VmConfig } from "../config/mod.ts";
import { defineDomain, domainXml, startDomain } from "../libvirt/mod.ts";
import { cloudModule } from "../lazy.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "export",
  summary: "export a VM as libvirt domain XML, or define it at a libvirt URI",
  description:
    "Config parts libvirt has no element for go into <qemu:commandline> (listed on stderr). With\n" +
    "--to, `virsh -c URI define` runs there: disks, kernel and shares must exist at the same paths\n" +
    "on that host, and a domain of the same name must not.",
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
  },
  examples: [
    "qvm export web1 --format libvirt -o web1.xml",
    "qvm export web1 --to qemu+ssh://root@host2/system --start",
  ],
};

function onPath(binary: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (dir !== "" && Deno.statSync(`${dir}/${binary}`).isFile) return `${dir}/${binary}`;
    } catch { /* not here */ }
  }
  return undefined;
}

/**
 * What qvm adds at start for `network:` and `cloud_init:` (the guest agent becomes a libvirt
 * channel instead): the same options, with `auto` host ports as 0 (QEMU picks a free one), and the
 * seed image, which exists once the VM has been started by qvm.
 */
async function cloudOptions(
  ctx: Context,
  vm: { id: string; config: VmConfig },
): Promise<{ argv: string[]; files: string[] } | undefined> {
  if (vm.config.network === undefined && vm.config.cloud_init === undefined) return undefined;
  const { cloudArgvPreview } = await cloudModule();
  const argv = cloudArgvPreview(ctx, { id: vm.id, config: { ...vm.config, guest_agent: false } });
  const files: string[] = [];
  for (const arg of argv) {
    const file = /^file=((?:[^,]|,,)+)/.exec(arg) ?? /file\.dir=((?:[^,]|,,)+)/.exec(arg);
    if (file) files.push(file[1].replaceAll(",,", ","));
  }
  return { argv, files };
}

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

/** Prints or writes the XML, or defines (and starts) the domain at `--to`. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const format = (args.values.format as string | undefined) ?? "libvirt";
  if (format !== "libvirt") {
    throw new UsageError(`export: unknown --format '${format}' (the one format is libvirt)`);
  }
  const uri = args.values.to as string | undefined;
  if (uri === "") throw new UsageError("export: --to needs a libvirt URI, e.g. qemu:///system");
  if (args.values.start && uri === undefined) {
    throw new UsageError("export: --start needs --to URI");
  }
  const vm = ctx.store.require(args.positionals[0]);
  const binary = vm.config.binary;
  const emulator = binary !== undefined && !binary.startsWith("/") ? onPath(binary) : undefined;
  const warnings: string[] = [];
  if (binary !== undefined && !binary.startsWith("/") && emulator === undefined) {
    warnings.push(`binary '${binary}' is not on PATH: libvirt will pick the emulator`);
  }
  const cloud = await cloudOptions(ctx, vm);
  const made = domainXml(vm, { diskDir: vmPaths(ctx.dirs, vm.id).diskDir, emulator, cloud });
  for (const line of made.passedThrough) {
    warnings.push(`no libvirt element for '${line}': passed to QEMU in <qemu:commandline>`);
  }
  for (const key of made.unknownKeys) {
    warnings.push(`${key}: qvm cannot map this to libvirt yet; it is kept in <metadata> only`);
  }
  if (vm.config.cloud_init?.user_data !== undefined || vm.config.cloud_init?.runcmd !== undefined) {
    warnings.push(
      "the config, cloud_init included, is kept in the domain's <metadata>: whoever can read " +
        "the domain can read it",
    );
  }
  const output = args.values.output as string | undefined;
  if (uri === undefined) {
    if (output !== undefined) await writeOutput(output, made.xml);
    for (const warning of warnings) ctx.warn(warning);
    if (ctx.json) {
      ctx.outJson({ id: vm.id, name: vm.name, xml: made.xml, passed_through: made.passedThrough });
    } else if (output === undefined) ctx.out(made.xml);
    return 0;
  }
  // Refusals come first and alone: one line, nothing defined.
  const missing = made.files.filter((file) => !exists(file, { follow: true }));
  if (missing.length > 0) {
    throw new QvmError(
      `export: ${vm.name} needs ${missing[0]}, which does not exist here ` +
        "(start the VM once to create its disks; they must exist at the same paths at the target)",
    );
  }
  await defineDomain({ uri, name: vm.name, xml: made.xml });
  if (output !== undefined) await writeOutput(output, made.xml);
  for (const warning of warnings) ctx.warn(warning);
  if (made.files.length > 0) {
    ctx.note(
      `these files must exist at the same paths where ${uri} runs: ${made.files.join(", ")}`,
    );
  }
  if (args.values.start) await startDomain({ uri, name: vm.name });
  const started = args.values.start === true;
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, uri, defined: true, started });
  else ctx.out(`${started ? "defined and started" : "defined"} ${vm.name} at ${uri}`);
  return 0;
}
