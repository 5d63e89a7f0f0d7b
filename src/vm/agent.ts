/** A VM's guest agent channel, as the VM layer uses it (stop's shutdown step, live snapshots). */
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { agentEnabled } from "../cloud/paths.ts";
import { cloudPaths } from "../vm_files.ts";

/**
 * The guest agent's socket when the VM has the agent channel (cloud VMs), else undefined. It
 * loads no cloud module but its small file of paths: `status` and `ls` reach this through a
 * guest left frozen, and the installed form inlines what they may load.
 */
export function agentSocketOf(env: VmEnv, vm: VmRecord): string | undefined {
  if (vm.config.guest_agent === undefined && vm.config.cloud_init === undefined) return undefined;
  return agentEnabled(vm.config) ? cloudPaths(env.dirs, vm.id).agentSocket : undefined;
}
