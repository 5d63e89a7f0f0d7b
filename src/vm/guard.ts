/**
 * The one path by which a VM changes: take the VM's lock before the command's deadline, re-read
 * its row under the lock (another command may have changed or removed it meanwhile), observe what
 * really runs (adopting a QEMU the row does not know), then act. start, stop, apply, rm, snapshot
 * and cleanup all go through `withVm`.
 */
import { NotFoundError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { acquireLock, type VmLock } from "./lock.ts";
import { type Observation, observe, thawedWarning } from "./observe.ts";
import { vmPaths } from "../vm_files.ts";

/** The VM was removed by another command while this one waited for its lock. */
export class VmRemovedError extends NotFoundError {
  override name = "VmRemovedError";
}

/** What an action under the VM's lock receives. */
export interface Guarded extends Observation {
  /** The held lock (released by `withVm` when the action ends). */
  lock: VmLock;
  /** The command's deadline, for the action's own waits. */
  deadline: Deadline;
}

/**
 * Runs `act` under VM `target`'s lock, taken before `deadline`, with the VM's row re-read and
 * observed under it. Throws TimeoutError (exit 2) if the lock stays taken, NotFoundError if the VM
 * was removed meanwhile.
 */
export async function withVm<T>(
  env: VmEnv,
  target: VmRecord,
  options: { deadline: Deadline; qmp?: boolean },
  act: (guarded: Guarded) => Promise<T>,
): Promise<T> {
  const lock = await acquireLock(vmPaths(env.dirs, target.id).lockFile, {
    timeoutMs: options.deadline.remainingMs(),
    what: `VM '${target.name}'`,
  });
  try {
    const row = env.store.get(target.id);
    if (!row || row.id !== target.id) {
      throw new VmRemovedError(`VM '${target.name}' was removed by another qvm command`);
    }
    const seen = await observe(env, row, {
      qmp: options.qmp ?? false,
      locked: true,
      lockedAt: lock.takenAt,
      thorough: true,
      timeoutMs: Math.min(options.deadline.remainingMs(), 1000),
    });
    if (seen.thawed) env.warn?.(thawedWarning(row.name));
    return await act({ ...seen, lock, deadline: options.deadline });
  } finally {
    lock.release();
  }
}
