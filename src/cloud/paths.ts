/** Where qvm keeps a cloud VM's files: the seed and known_hosts in the data dir, the rest at run time. */
import type { Dirs } from "../state/mod.ts";
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
