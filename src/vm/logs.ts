/**
 * A VM's logs, copied out: the serial console's log (every run of the VM) or QEMU's own of the
 * last run, and, when following, what is added while the VM runs: through a log that is truncated
 * or replaced, through a restart, and from the start of a VM still starting.
 */
import { NotFoundError } from "../errors.ts";
import { sleep } from "../timers.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { isLocked } from "./lock.ts";
import { isLive, observe } from "./observe.ts";
import { vmPaths } from "../vm_files.ts";

/** How often following looks for new output and at the VM. */
const POLL_MS = 200;
/**
 * How long following waits after the VM stopped (with no qvm command working on it) for it to be
 * started again before it ends: long enough for `qvm stop VM; qvm start VM`.
 */
export const RESTART_GRACE_MS = 3000;

/** Where the log's bytes go, and the buffer they pass through. */
interface Output {
  write(bytes: Uint8Array): void;
  buf: Uint8Array;
}

/**
 * Copies VM `idOrName`'s serial log (`qemu`: QEMU's own log) to `write`; with `follow`, goes on
 * while the VM runs (see {@linkcode RESTART_GRACE_MS}). NotFoundError when there is no log.
 */
export async function copyLog(
  env: VmEnv,
  idOrName: string,
  options: { qemu: boolean; follow: boolean; write(bytes: Uint8Array): void },
): Promise<void> {
  const vm = env.store.require(idOrName);
  const paths = vmPaths(env.dirs, vm.id);
  const path = options.qemu ? paths.qemuLog : paths.serialLog;
  const out = { write: options.write, buf: new Uint8Array(65536) };
  if (options.follow) {
    if (!await follow(env, vm, { ...out, path })) throw noLog(env.store.get(vm.id) ?? vm);
    return;
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw noLog(vm);
    throw err;
  }
  try {
    await drain(file, out);
  } finally {
    file.close();
  }
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
async function drain(file: Deno.FsFile, out: Output): Promise<number> {
  let total = 0;
  while (true) {
    const n = await file.read(out.buf);
    if (n === null || n === 0) return total;
    out.write(out.buf.subarray(0, n));
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
async function follow(env: VmEnv, vm: VmRecord, out: Output & { path: string }): Promise<boolean> {
  const { path } = out;
  const lockFile = vmPaths(env.dirs, vm.id).lockFile;
  let log = openLog(path);
  let found = log !== undefined;
  let stoppedSince: number | undefined;
  try {
    while (true) {
      if (log !== undefined) log = await readOn(log, out);
      if (log === undefined) {
        log = openLog(path);
        if (log !== undefined) {
          found = true;
          continue;
        }
      }
      const current = env.store.get(vm.id);
      if (current === undefined) break; // Removed: nothing more will come.
      const seen = await observe(env, current, { qmp: false });
      if (isLive(seen.status) || isLocked(lockFile)) {
        stoppedSince = undefined;
      } else {
        stoppedSince ??= Date.now();
        if (Date.now() - stoppedSince >= RESTART_GRACE_MS) break;
      }
      await sleep(POLL_MS);
    }
    // The guest's last words may have landed after the last read.
    if (log !== undefined) await drain(log.file, out);
  } finally {
    log?.file.close();
  }
  return found;
}

/**
 * Copies what was added to the followed log; undefined (the old file read to its end and closed)
 * once the log at `out.path` is another file or gone.
 */
async function readOn(
  log: Followed,
  out: Output & { path: string },
): Promise<Followed | undefined> {
  // Truncated (copytruncate, or QEMU's own log at a new start): read it from its start.
  if (log.file.statSync().size < log.offset) {
    await log.file.seek(0, Deno.SeekMode.Start);
    log.offset = 0;
  }
  log.offset += await drain(log.file, out);
  // Replaced by a new file (or removed): finish the old one, then take the new one.
  if (statIno(out.path) === log.ino) return log;
  log.offset += await drain(log.file, out);
  log.file.close();
  return undefined;
}

function statIno(path: string): number | null | undefined {
  try {
    return Deno.statSync(path).ino;
  } catch {
    return undefined;
  }
}
