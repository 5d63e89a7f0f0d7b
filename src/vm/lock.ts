/**
 * Per-VM locks (flock on `<runtime>/<id>.lock`): every state change of one VM runs under it, so
 * two concurrent `start`s give one QEMU. The kernel drops the lock if qvm dies.
 */
import { TimeoutError } from "../errors.ts";
import { ensurePrivateDir } from "../state/mod.ts";
import { dirname } from "node:path";

/** A held lock; release it with `release()` (or let the process exit). */
export interface VmLock {
  release(): void;
}

/** Waits up to `timeoutMs` for the lock at `path`; TimeoutError names `what` if it stays taken. */
export async function acquireLock(
  path: string,
  options: { timeoutMs: number; what: string },
): Promise<VmLock> {
  ensurePrivateDir(dirname(path));
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  const deadline = Date.now() + options.timeoutMs;
  let delay = 5;
  while (!(await file.tryLock(true))) {
    if (Date.now() >= deadline) {
      file.close();
      throw new TimeoutError(`${options.what} is busy: another qvm command holds its lock`);
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 50);
  }
  return {
    release() {
      try {
        file.unlockSync();
      } finally {
        file.close();
      }
    },
  };
}

/** True if some process holds the lock at `path` right now. */
export function isLocked(path: string): boolean {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: true });
  } catch {
    return false;
  }
  try {
    if (!file.tryLockSync(true)) return true;
    file.unlockSync();
    return false;
  } finally {
    file.close();
  }
}
