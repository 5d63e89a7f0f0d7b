/**
 * Per-VM locks (flock on `<runtime>/<id>.lock`): every state change of one VM runs under it, so
 * two concurrent `start`s give one QEMU. The kernel drops the lock if qvm dies.
 *
 * A lock file may be unlinked by its holder (`rm` removes a VM's lock file while holding it). A
 * waiter that then wins the flock on the unlinked inode would hold a lock nobody else can see, so
 * after each win the open file is compared with what the path names now, and on a mismatch the
 * waiter starts over with the new file.
 */
import { TimeoutError } from "../errors.ts";
import { ensurePrivateDir } from "../state/mod.ts";
import { sleep } from "../timers.ts";

/** A held lock; release it with `release()` (or let the process exit). */
export interface VmLock {
  /** When it was taken (`performance.now()`, read right after the kernel granted it). */
  readonly takenAt: number;
  release(): void;
  /** Removes the lock file while it is still held (for a VM that no longer exists), then releases. */
  releaseAndRemove(): void;
}

function parentOf(path: string): string {
  return path.slice(0, Math.max(path.lastIndexOf("/"), 1));
}

/** True if `file` (open) is still the file at `path`. */
function stillAt(file: Deno.FsFile, path: string): boolean {
  try {
    const held = file.statSync();
    const now = Deno.lstatSync(path);
    return now.isFile && held.ino === now.ino && held.dev === now.dev;
  } catch {
    return false;
  }
}

function openLockFile(path: string): Deno.FsFile {
  try {
    // An existing symlink at the path is refused: the lock file is opened, never followed.
    const info = Deno.lstatSync(path);
    if (info.isSymlink) Deno.removeSync(path);
  } catch { /* absent: created below */ }
  return Deno.openSync(path, { read: true, write: true, create: true, mode: 0o600 });
}

/** Waits up to `timeoutMs` for the lock at `path`; TimeoutError names `what` if it stays taken. */
export async function acquireLock(
  path: string,
  options: { timeoutMs: number; what: string },
): Promise<VmLock> {
  ensurePrivateDir(parentOf(path));
  const deadline = Date.now() + Math.max(options.timeoutMs, 0);
  let delay = 5;
  for (;;) {
    const file = openLockFile(path);
    let won = false;
    try {
      won = file.tryLockSync(true); // never blocks: a taken lock is waited for below
    } catch (err) {
      file.close();
      throw err;
    }
    const takenAt = performance.now();
    if (won && stillAt(file, path)) return heldLock(file, { path, takenAt });
    file.close(); // lost, or won a lock file its holder has just removed: try again
    if (won) continue;
    if (Date.now() >= deadline) {
      throw new TimeoutError(`${options.what} is busy: another qvm command holds its lock`);
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 50);
  }
}

function heldLock(file: Deno.FsFile, taken: { path: string; takenAt: number }): VmLock {
  const { path, takenAt } = taken;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    try {
      file.unlockSync();
    } finally {
      file.close();
    }
  };
  return {
    takenAt,
    release,
    releaseAndRemove() {
      if (!released && stillAt(file, path)) {
        try {
          Deno.removeSync(path);
        } catch { /* already gone */ }
      }
      release();
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
