/** `qvm logs`: the VM's serial console log; `--follow` keeps printing until the VM stops. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { NotFoundError } from "../errors.ts";
import { isOurQemu } from "../qemu/process.ts";
import { vmPaths } from "../vm/paths.ts";
import { ensurePlainFile } from "../vm/safe_files.ts";
import { ensurePrivateDir } from "../state/mod.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "logs",
  summary: "print a VM's serial console log",
  description: "The log spans every run of the VM. --qemu prints QEMU's own messages instead.",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {
    follow: {
      type: "boolean",
      short: "f",
      description: "keep printing new output until the VM stops",
    },
    qemu: { type: "boolean", description: "QEMU's own log (errors, signals) of the last run" },
  },
  examples: ["qvm logs web1", "qvm logs web1 --follow"],
};

/** Copies the log to stdout, following it while the VM's QEMU lives when asked. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const vm = ctx.store.require(args.positionals[0]);
  const paths = vmPaths(ctx.dirs, vm.id);
  const path = args.values.qemu ? paths.qemuLog : paths.serialLog;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      if (!args.values.follow) {
        throw new NotFoundError(`VM '${vm.name}' has no log yet (never started)`);
      }
      // Made as a plain file of ours: a link planted at the path is removed, never followed.
      ensurePrivateDir(path.slice(0, path.lastIndexOf("/")));
      ensurePlainFile(path);
      file = await Deno.open(path, { read: true });
    } else throw err;
  }
  const buf = new Uint8Array(65536);
  try {
    while (true) {
      const n = await file.read(buf);
      if (n !== null && n > 0) {
        await Deno.stdout.write(buf.subarray(0, n));
        continue;
      }
      if (!args.values.follow) break;
      const current = ctx.store.require(vm.id);
      if (!isOurQemu(current.pid, current.id)) {
        // One last read: the guest's final words may land after the check.
        const rest = await file.read(buf);
        if (rest) await Deno.stdout.write(buf.subarray(0, rest));
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    file.close();
  }
  return 0;
}
