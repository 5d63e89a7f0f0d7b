/** A VM's guest agent channel, as the VM layer uses it (stop's shutdown step, live snapshots). */
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { cloudModule } from "../cloud/lazy.ts";

/** The guest agent's socket when the VM has the agent channel (cloud VMs), else undefined. */
export async function agentSocketOf(env: VmEnv, vm: VmRecord): Promise<string | undefined> {
  if (vm.config.guest_agent === undefined && vm.config.cloud_init === undefined) return undefined;
  const { agentEnabled, cloudPaths } = await cloudModule();
  return agentEnabled(vm.config) ? cloudPaths(env.dirs, vm.id).agentSocket : undefined;
}
