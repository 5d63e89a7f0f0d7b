/** `qvm cp`: copy files and folders between the host and a running VM. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { copyFiles, type CopyProgress, type CopyRoute } from "../cloud/copy.ts";
import { copyRequest, parseOperand } from "../cloud/copy_plan.ts";
import { formatSeconds, printable, Progress } from "../progress.ts";
import { formatSize } from "./_size.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "cp",
  summary: "copy files and folders between the host and a running VM",
  description:
    "Copies as cp does (into DST when it is a directory, which it must be for several\n" +
    "sources; -r for directories), with exactly one side in a VM, written VM:PATH. A word is\n" +
    "VM:PATH when the text before its first ':' has no '/' and names an existing VM (name or\n" +
    "id); anything else is a host path (write ./a:b for a host file named a:b). A relative\n" +
    "PATH, '' and ~ start in the home of the VM's user. Modes are kept.\n" +
    "Through the guest agent (no network needed) files move in 4 MiB chunks, any size, every\n" +
    "byte value; new files belong to the VM's user (as qvm exec runs), replaced ones keep their\n" +
    "owner; a file appears at its name only once complete. Symlinks inside a copied directory\n" +
    "are copied as symlinks; devices, sockets and fifos are skipped (a warning each). Without\n" +
    "an agent channel (or with --via ssh) it runs scp over the VM's SSH forward.",
  positionals: [
    { name: "SRC", description: "file or folder to copy (VM:PATH or a host path)", variadic: true },
    { name: "DST", description: "where to copy to (VM:PATH or a host path)" },
  ],
  options: {
    recursive: { type: "boolean", short: "r", description: "copy directories and what they hold" },
    via: {
      type: "string",
      value: "agent|ssh",
      description: "agent (guest-file calls) or ssh (scp); default: the agent when it answers",
      complete: ["agent", "ssh"],
    },
  },
  examples: [
    "qvm cp notes.txt web1:/tmp/",
    "qvm cp -r web1:/var/log/nginx ./logs",
    "qvm cp --via ssh big.iso web1:",
  ],
};

/** Copies; prints nothing but warnings, or the counts with --json. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const via = args.values.via ?? "auto";
  if (via !== "auto" && via !== "agent" && via !== "ssh") {
    throw new UsageError(`qvm cp: --via is agent or ssh, not '${via}'`);
  }
  const operands = args.positionals.map((word) =>
    parseOperand(word, (name) => ctx.store.get(name) !== undefined)
  );
  const request = copyRequest(operands);
  const vm = ctx.store.require(request.vm);

  // Ctrl-C stops the copy between chunks and lets it clean up; a second one ends qvm at once.
  const controller = new AbortController();
  const interrupt = () => {
    if (controller.signal.aborted) Deno.exit(130);
    controller.abort();
  };
  const progress = new Progress(ctx, { interrupts: false });
  try {
    Deno.addSignalListener("SIGINT", interrupt);
  } catch { /* no signals here */ }
  try {
    const result = await copyFiles(ctx, vm, request, {
      recursive: args.values.recursive === true,
      via: via as CopyRoute,
      signal: controller.signal,
      warn: (message) => {
        progress.done();
        ctx.warn(message);
      },
      onProgress: progress.enabled ? showCopy(progress) : undefined,
      scpProgress: progress.enabled,
    });
    progress.done();
    if (ctx.json) {
      ctx.outJson({ vm: vm.name, direction: request.direction, ...result });
    }
    return 0;
  } finally {
    progress.done();
    try {
      Deno.removeSignalListener("SIGINT", interrupt);
    } catch { /* never added */ }
  }
}

/** Shows `copying 12M of 100M (12%) · 3.1M/s · FILE` once a copy has a megabyte or more to move. */
function showCopy(progress: Progress): (state: CopyProgress) => void {
  const began = Date.now();
  let latest: CopyProgress = { done: 0, total: 0, current: "" };
  const render = () => {
    const { done, total, current } = latest;
    const spent = Date.now() - began;
    const rate = spent > 0 ? `${formatSize(Math.round(done / (spent / 1000)))}/s · ` : "";
    const percent = total > 0 ? Math.floor((done / total) * 100) : 100;
    return `copying ${formatSize(done)} of ${formatSize(total)} (${percent}%) · ` +
      progress.dim(`${rate}${formatSeconds(spent)}`) + (current ? ` · ${printable(current)}` : "");
  };
  return (state) => {
    latest = state;
    if (state.total >= 1024 * 1024) progress.show(render);
  };
}
