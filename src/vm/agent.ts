/** A VM's guest agent channel, as the VM layer uses it (stop's shutdown step, live snapshots). */
import { NotRunningError, QvmError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { observe } from "./observe.ts";
import { cloudModule } from "../cloud/lazy.ts";

/** The guest agent's socket when the VM has the agent channel (cloud VMs), else undefined. */
export async function agentSocketOf(env: VmEnv, vm: VmRecord): Promise<string | undefined> {
  if (vm.config.guest_agent === undefined && vm.config.cloud_init === undefined) return undefined;
  const { agentEnabled, cloudPaths } = await cloudModule();
  return agentEnabled(vm.config) ? cloudPaths(env.dirs, vm.id).agentSocket : undefined;
}

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
