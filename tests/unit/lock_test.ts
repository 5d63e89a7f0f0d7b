import assert from "node:assert/strict";
import { acquireLock, isLocked } from "../../src/vm/lock.ts";
import { TimeoutError } from "../../src/errors.ts";

/**
 * Runs `between` inside the next `tryLockSync` call, just before the real flock is tried: what
 * another process may do between a waiter's opening of the lock file and its try for the lock.
 */
function beforeNextTry(between: () => void): () => void {
  const original = Deno.FsFile.prototype.tryLockSync;
  const restore = () => Deno.FsFile.prototype.tryLockSync = original;
  Deno.FsFile.prototype.tryLockSync = function (this: Deno.FsFile, exclusive?: boolean) {
    restore();
    between();
    return original.call(this, exclusive);
  };
  return restore;
}

Deno.test("a waiter that wins the lock on a lock file rm has just unlinked does not hold the VM's lock", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qvm-lock-" });
  const path = `${dir}/vm.lock`;
  try {
    const holder = await acquireLock(path, { timeoutMs: 0, what: "VM 'a'" });
    // The waiter has opened the lock file still at the path when rm unlinks it and lets go:
    // the waiter's flock on that old file then wins.
    let unlinked = false;
    const restore = beforeNextTry(() => {
      holder.releaseAndRemove();
      unlinked = true;
    });
    let waiter;
    try {
      waiter = await acquireLock(path, { timeoutMs: 5000, what: "VM 'a'" });
    } finally {
      restore();
    }
    assert.ok(unlinked, "rm's unlink did not come between the waiter's open and its try");
    try {
      // A third acquire on the path must wait while the waiter holds the VM's lock.
      assert.ok(isLocked(path), "the lock file at the path is not locked");
      await assert.rejects(
        acquireLock(path, { timeoutMs: 300, what: "VM 'a'" }),
        (error) => error instanceof TimeoutError && /VM 'a' is busy/.test(error.message),
      );
    } finally {
      waiter.release();
    }
    const third = await acquireLock(path, { timeoutMs: 0, what: "VM 'a'" });
    third.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
