/** Which VMs have cloud parts and the agent channel, and which VM holds a host port. */
import type { Dirs, StateStore } from "../state/mod.ts";
import { isOurQemu, markersIn } from "../qemu/process.ts";
import { cloudPaths, readForwards } from "../vm_files.ts";

/**
 * True if a VM's config has cloud parts (an image, network, cloud-init or a guest agent): the
 * VMs that have cloud files at all.
 */
export function usesCloud(
  config: { image?: unknown; network?: unknown; cloud_init?: unknown; guest_agent?: boolean },
): boolean {
  return config.image !== undefined || config.network !== undefined ||
    config.cloud_init !== undefined || config.guest_agent === true;
}

/** Whether the guest agent channel is on: `guest_agent`, else on exactly when `cloud_init` is set. */
export function agentEnabled(config: { guest_agent?: boolean; cloud_init?: unknown }): boolean {
  return config.guest_agent ?? config.cloud_init !== undefined;
}

/**
 * The name of the running VM of ours whose forwards in effect hold host port `forward.host` (same
 * protocol, an address that overlaps), if any: for the message when a fixed port is taken.
 */
export function portHolder(
  env: { dirs: Dirs; store: StateStore },
  forward: { proto: string; address: string; host: number },
): string | undefined {
  const overlaps = (a: string, b: string) => a === b || a === "0.0.0.0" || b === "0.0.0.0";
  for (const vm of env.store.listLive()) {
    const forwards = readForwards(cloudPaths(env.dirs, vm.id).forwardsFile) ?? [];
    const holds = forwards.some((f) =>
      f.proto === forward.proto && f.host === forward.host && overlaps(f.address, forward.address)
    );
    if (holds && isOurQemu(vm.pid, markersIn(env.dirs.runtimeDir, vm))) return vm.name;
  }
  return undefined;
}
