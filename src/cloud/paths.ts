/** Where qvm keeps a cloud VM's files: the seed and known_hosts in the data dir, the rest at run time. */
import type { Dirs, StateStore } from "../state/mod.ts";
import { isOurQemu, markersIn } from "../qemu/process.ts";
import type { ActiveForward } from "./ports.ts";

/** Every cloud file of VM `id`. */
export interface CloudPaths {
  /** Folder of the VM's seed, ISO and known_hosts. */
  dir: string;
  seedDir: string;
  knownHosts: string;
  /** The instance id of the last seed, to notice a changed `cloud_init:` section. */
  instanceIdFile: string;
  /** The guest agent's socket. */
  agentSocket: string;
  /** The forwards in effect, written at start. */
  forwardsFile: string;
  /** The host ports `auto` forwards got, kept across starts (in the data dir). */
  autoPortsFile: string;
}

/** The cloud paths of VM `id` under `dirs`; pure. */
export function cloudPaths(dirs: Dirs, id: string): CloudPaths {
  const data = dirs.dataDir.replace(/\/+$/, "");
  const runtime = dirs.runtimeDir.replace(/\/+$/, "");
  const dir = `${data}/cloud/${id}`;
  return {
    dir,
    seedDir: `${dir}/seed`,
    knownHosts: `${dir}/known_hosts`,
    instanceIdFile: `${dir}/instance-id`,
    agentSocket: `${runtime}/${id}.ga`,
    forwardsFile: `${runtime}/${id}.ports.json`,
    autoPortsFile: `${dir}/auto-ports.json`,
  };
}

/** The forwards recorded in `file` at start, or undefined when there is no readable record. */
export function readForwards(file: string): ActiveForward[] | undefined {
  try {
    const data = JSON.parse(Deno.readTextFileSync(file));
    return Array.isArray(data) ? data as ActiveForward[] : undefined;
  } catch {
    return undefined;
  }
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
