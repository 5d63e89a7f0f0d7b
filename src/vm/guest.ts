/**
 * A running guest for the commands that work in it (`exec`, `ssh`): looked up, observed, and
 * refused unless it can take the work now.
 */
import { NotRunningError, QvmError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { observe } from "./observe.ts";

/**
 * Looks up VM `idOrName` for a command that works in its guest (`exec`, `ssh`): NotRunningError
 * (exit 3) unless its QEMU runs. A guest that an interrupted live snapshot left frozen is thawed
 * first (`thawed` says so); one that stays frozen (the snapshot still runs, or the agent does not
 * answer the thaw) is an error, as the guest's writes would hang.
 */
export async function requireGuest(
  env: VmEnv,
  idOrName: string,
): Promise<{ vm: VmRecord; thawed: boolean }> {
  const seen = await observe(env, env.store.require(idOrName), { qmp: false });
  const { vm } = seen;
  if (seen.status === "frozen") {
    throw new QvmError(
      `VM '${vm.name}''s file systems are frozen for a live snapshot: wait until 'qvm snapshot' ` +
        `has finished (if none runs, the guest agent did not answer the thaw: 'qvm status ` +
        `${vm.name}' tries again)`,
    );
  }
  if (seen.status !== "running") {
    throw new NotRunningError(`VM '${vm.name}' is not running (status: ${seen.status})`);
  }
  return { vm, thawed: seen.thawed === true };
}
