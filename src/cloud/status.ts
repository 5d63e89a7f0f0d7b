/**
 * What `status --json` shows of a cloud VM: its port forwards and the guest's addresses. Kept
 * apart from the cloud module so `status` loads neither the config parser nor the seed builder.
 */
import type { PortForward, VmConfig } from "../config/mod.ts";
import type { Dirs, VmRecord } from "../state/mod.ts";
import { UsageError } from "../errors.ts";
import type { ActiveForward } from "./ports.ts";
import { agentAddresses, type GuestAddress } from "./agent.ts";
import { agentEnabled } from "./paths.ts";
import { cloudPaths, readForwards } from "../vm_files.ts";

export { agentEnabled };

/** Throws a UsageError (exit 3) unless `vm` has the guest agent channel (see `agentEnabled`). */
export function requireAgentChannel(vm: { name: string; config: VmConfig }): void {
  if (!agentEnabled(vm.config)) {
    throw new UsageError(`VM '${vm.name}' has no guest agent channel: set guest_agent: true`);
  }
}

/** The forwards in effect for a running VM (recorded at start), else undefined. */
export function activeForwards(dirs: Dirs, id: string): ActiveForward[] | undefined {
  return readForwards(cloudPaths(dirs, id).forwardsFile);
}

/**
 * The cloud part of `status --json`: the forwards in effect (configured ones when stopped) and,
 * when the guest agent answers within a second, the guest's addresses (`null` otherwise).
 */
export async function cloudStatus(
  dirs: Dirs,
  vm: VmRecord,
  live: boolean,
): Promise<{ forwards: ActiveForward[] | PortForward[]; addresses: GuestAddress[] | null }> {
  const forwards = (live ? activeForwards(dirs, vm.id) : undefined) ?? vm.config.network?.ports ??
    [];
  let addresses: GuestAddress[] | null = null;
  if (live && agentEnabled(vm.config)) {
    try {
      addresses = await agentAddresses(cloudPaths(dirs, vm.id).agentSocket, 1000);
    } catch { /* no agent answering (yet) */ }
  }
  return { forwards, addresses };
}
