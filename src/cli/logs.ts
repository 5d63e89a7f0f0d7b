/**
 * `qvm logs`: the VM's serial console log. `--follow` keeps printing while the VM runs: through a
 * log that is truncated or replaced, through a restart, and from the start of a VM still starting.
 */
import { type Context, writeOut } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { NotFoundError } from "../errors.ts";
import { sleep } from "../timers.ts";
import type { VmRecord } from "../state/mod.ts";
import { isLocked } from "../vm/lock.ts";
import { isLive, observe } from "../vm/observe.ts";
import { vmPaths } from "../vm_files.ts";

/** How often `--follow` looks for new output and at the VM. */
const POLL_MS = 200;
/**
 * How long `--follow` waits after the VM stopped (with no qvm command working on it) for it to be
 * started again before it ends: long enough for `qvm stop VM; qvm start VM`.
 */
export const RESTART_GRACE_MS = 3000;

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "logs",
  summary: "print a VM's serial console log",
  description: "The log spans every run of the VM. --qemu prints QEMU's own messages instead.\n" +
    "--follow keeps printing new output while the VM runs: it waits for a VM still starting,\n" +
    "reads a truncated or replaced log from its new start, goes on through a restart, and ends\n" +
    `once the VM has stopped and was not started again within ${RESTART_GRACE_MS / 1000} s.`,
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
  if (args.values.follow) {
    const found = await follow(ctx, vm, path);
    if (!found) throw noLog(ctx.store.get(vm.id) ?? vm);
    return 0;
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw noLog(vm);
    throw err;
  }
  try {
    await drain(file, new Uint8Array(65536));
  } finally {
    file.close();
  }
  return 0;
}

/** Why there is no log: never started, or the last start failed before QEMU ran. */
function noLog(vm: VmRecord): NotFoundError {
  if (vm.status === "failed") {
    const why = vm.stopReason ? `: ${vm.stopReason}` : "";
    return new NotFoundError(`VM '${vm.name}' has no log: its start failed before QEMU ran${why}`);
  }
  return new NotFoundError(`VM '${vm.name}' has no log yet (never started)`);
}

/** Copies what `file` has from its position to stdout; the number of bytes copied. */
async function drain(file: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let total = 0;
  while (true) {
    const n = await file.read(buf);
    if (n === null || n === 0) return total;
    writeOut(buf.subarray(0, n));
    total += n;
  }
}

/** The log open for following: the file, which file it is, and how far it was read. */
interface Followed {
  file: Deno.FsFile;
  ino: number | null;
  offset: number;
}

function openLog(path: string): Followed | undefined {
  try {
    const file = Deno.openSync(path, { read: true });
    return { file, ino: file.statSync().ino, offset: 0 };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/**
 * Prints the log at `path` and what is added to it until the VM has stopped for good (see
 * {@linkcode RESTART_GRACE_MS}). False if there never was a log to print.
 */
async function follow(ctx: Context, vm: VmRecord, path: string): Promise<boolean> {
  const buf = new Uint8Array(65536);
  const lockFile = vmPaths(ctx.dirs, vm.id).lockFile;
  let log = openLog(path);
  let found = log !== undefined;
  let stoppedSince: number | undefined;
  try {
    while (true) {
      if (log !== undefined) {
        // Truncated (copytruncate, or QEMU's own log at a new start): read it from its start.
        if (log.file.statSync().size < log.offset) {
          await log.file.seek(0, Deno.SeekMode.Start);
          log.offset = 0;
        }
        log.offset += await drain(log.file, buf);
        // Replaced by a new file (or removed): finish the old one, then take the new one.
        const now = statIno(path);
        if (now !== log.ino) {
          log.offset += await drain(log.file, buf);
          log.file.close();
          log = undefined;
        }
      }
      if (log === undefined) {
        log = openLog(path);
        if (log !== undefined) {
          found = true;
          continue;
        }
      }
      const current = ctx.store.get(vm.id);
      if (current === undefined) break; // Removed: nothing more will come.
      const seen = await observe(ctx, current, { qmp: false });
      if (isLive(seen.status) || isLocked(lockFile)) {
        stoppedSince = undefined;
      } else {
        stoppedSince ??= Date.now();
        if (Date.now() - stoppedSince >= RESTART_GRACE_MS) break;
      }
      await sleep(POLL_MS);
    }
    // The guest's last words may have landed after the last read.
    if (log !== undefined) await drain(log.file, buf);
  } finally {
    log?.file.close();
  }
  return found;
}

function statIno(path: string): number | null | undefined {
  try {
    return Deno.statSync(path).ino;
  } catch {
    return undefined;
  }
}
