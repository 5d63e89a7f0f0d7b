/**
 * Every file qvm keeps for one VM, named in this one place: in the runtime dir, `<id>.<kind>`
 * (QMP sockets, serial socket, pid file, lock, serial start mark, frozen-guest mark, guest agent
 * socket, the port forwards in effect); in the data dir, its logs, its disk folder (with the
 * overlay of its `image:`) and its cloud folder (seed, known_hosts, instance id, the host ports
 * its `auto` forwards got). String work, no node:path (`status` and `ls` use it too), besides
 * the scan of the runtime dir, the two checks made on a file (`exists`, `removeQuietly`) and the
 * read of the forwards record (`readForwards`), which `ls` and the cloud module share.
 */

/** The two folders a VM's files live in (the `Dirs` qvm resolves at start-up). */
interface Folders {
  dataDir: string;
  runtimeDir: string;
}

function join(dir: string, ...names: string[]): string {
  return `${dir.replace(/\/+$/, "")}/${names.join("/")}`;
}

/** The overlay's file name in the VM's disk folder: the root disk of a VM with `image:`. */
const OVERLAY_NAME = "image-overlay.qcow2";

/** The storage name and QEMU drive id of a VM's root disk, the overlay of its `image:`. */
export const ROOT_DRIVE = "qvm-root";

/**
 * Every kind of file qvm keeps per VM in the runtime dir (`<id>.<kind>`), and what it is in
 * words. All but the lock belong to one run of QEMU and are stale once it is gone; the lock is
 * the VM's for its whole life.
 */
export const RUNTIME_KINDS = {
  qmp: "socket",
  mon: "socket",
  evt: "socket",
  serial: "socket",
  ga: "socket",
  boot: "serial start mark",
  frozen: "frozen-guest mark",
  pid: "pid file",
  lock: "lock file",
  "ports.json": "port forwards record",
} as const;

/** A kind of runtime file (see `RUNTIME_KINDS`). */
export type RuntimeKind = keyof typeof RUNTIME_KINDS;

/** One file in the runtime dir that belongs to VM `id`. */
export interface RuntimeFile {
  id: string;
  kind: RuntimeKind;
  path: string;
}

const RUNTIME_FILE = new RegExp(
  `^(.+)\\.(${Object.keys(RUNTIME_KINDS).map((k) => k.replaceAll(".", "\\.")).join("|")})$`,
);

/** The runtime dir's file of kind `kind` for VM `id`. */
export function runtimeFile(
  dirs: Pick<Folders, "runtimeDir">,
  file: { id: string; kind: RuntimeKind },
): string {
  return join(dirs.runtimeDir, `${file.id}.${file.kind}`);
}

/** The VM id and kind of a runtime dir entry named `name`, or undefined if it is not qvm's. */
export function parseRuntimeFile(name: string): { id: string; kind: RuntimeKind } | undefined {
  const match = name.match(RUNTIME_FILE);
  return match ? { id: match[1], kind: match[2] as RuntimeKind } : undefined;
}

/** What a runtime file is, in words: `socket`, `pid file`, `lock file`, ... */
export function describeKind(kind: RuntimeKind): string {
  return RUNTIME_KINDS[kind];
}

/**
 * Every qvm runtime file in `runtimeDir`, grouped by VM id, by name (a missing folder has none;
 * other failures to read it are thrown).
 */
export function scanRuntimeDir(runtimeDir: string): Map<string, RuntimeFile[]> {
  const byId = new Map<string, RuntimeFile[]>();
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(runtimeDir)];
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return byId;
    throw err;
  }
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const parsed = parseRuntimeFile(entry.name);
    if (!parsed || entry.isDirectory) continue;
    const list = byId.get(parsed.id) ?? [];
    list.push({ ...parsed, path: join(runtimeDir, entry.name) });
    byId.set(parsed.id, list);
  }
  return byId;
}

/**
 * The names in the runtime dir, from one listing (none when it does not exist): for a reader of
 * many VMs, which then looks only for the files that are there.
 */
export function runtimeNames(dirs: Pick<Folders, "runtimeDir">): Set<string> {
  const names = new Set<string>();
  try {
    for (const entry of Deno.readDirSync(dirs.runtimeDir)) names.add(entry.name);
  } catch { /* no runtime dir: nothing runs */ }
  return names;
}

/** The ids of the VMs with a freeze marker (`<id>.frozen`) among runtime dir `names`. */
export function frozenIds(names: Iterable<string>): string[] {
  const ids: string[] = [];
  for (const name of names) {
    if (name.endsWith(".frozen")) ids.push(name.slice(0, -".frozen".length));
  }
  return ids;
}

/** Every path belonging to one VM. */
export interface VmPaths {
  /** QMP for commands (one client at a time, others wait). */
  qmpSocket: string;
  /** A second QMP monitor kept for status reads, so `ls` never queues behind a long command. */
  monitorSocket: string;
  /** A third QMP monitor that only `qvm events` reads, so following events takes neither other. */
  eventSocket: string;
  serialSocket: string;
  /** Where the serial log stood when this run of QEMU began (`wait --for serial:` reads on). */
  bootFile: string;
  pidFile: string;
  lockFile: string;
  /** Written before qvm freezes the guest's file systems, removed once they are thawed. */
  frozenFile: string;
  serialLog: string;
  qemuLog: string;
  diskDir: string;
  /** The root disk of a VM with `image:`: a qcow2 overlay of the image, made at first start. */
  rootOverlay: string;
}

/** The paths of VM `id` under `dirs`; pure, nothing is created. */
export function vmPaths(dirs: Folders, id: string): VmPaths {
  return {
    qmpSocket: runtimeFile(dirs, { id, kind: "qmp" }),
    monitorSocket: runtimeFile(dirs, { id, kind: "mon" }),
    eventSocket: runtimeFile(dirs, { id, kind: "evt" }),
    serialSocket: runtimeFile(dirs, { id, kind: "serial" }),
    bootFile: runtimeFile(dirs, { id, kind: "boot" }),
    pidFile: runtimeFile(dirs, { id, kind: "pid" }),
    lockFile: runtimeFile(dirs, { id, kind: "lock" }),
    frozenFile: runtimeFile(dirs, { id, kind: "frozen" }),
    serialLog: join(dirs.dataDir, "logs", `${id}.serial.log`),
    qemuLog: qemuLogPath(dirs, id),
    diskDir: join(dirs.dataDir, "disks", id),
    rootOverlay: join(dirs.dataDir, "disks", id, OVERLAY_NAME),
  };
}

/** The QEMU log (`-D`) of VM `id`: its run-state trace, and why it last ended. */
export function qemuLogPath(dirs: Pick<Folders, "dataDir">, id: string): string {
  return join(dirs.dataDir, "logs", `${id}.qemu.log`);
}

/**
 * Where a disk of the VM lives: its `file`, else `<diskDir>/<name>.<type>`. The same rule as
 * config's `diskFile`, in string work, so `info` needs neither node:path nor the config module.
 */
export function vmDiskFile(
  diskDir: string,
  disk: { name: string; type: string; file?: string },
): string {
  return disk.file ?? join(diskDir, `${disk.name}.${disk.type}`);
}

/** The files a running QEMU of this VM has (sockets, pid file): stale once it is gone. */
export function runtimeFiles(paths: VmPaths): string[] {
  return [
    paths.pidFile,
    paths.qmpSocket,
    paths.monitorSocket,
    paths.eventSocket,
    paths.serialSocket,
    paths.bootFile,
    paths.frozenFile,
  ];
}

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
export function cloudPaths(dirs: Folders, id: string): CloudPaths {
  const dir = join(dirs.dataDir, "cloud", id);
  return {
    dir,
    seedDir: `${dir}/seed`,
    knownHosts: `${dir}/known_hosts`,
    instanceIdFile: `${dir}/instance-id`,
    agentSocket: runtimeFile(dirs, { id, kind: "ga" }),
    forwardsFile: runtimeFile(dirs, { id, kind: "ports.json" }),
    autoPortsFile: `${dir}/auto-ports.json`,
  };
}

/** A port forward in effect, as a VM's forwards record (`<id>.ports.json`) holds it. */
export interface ForwardRecord {
  proto: "tcp" | "udp";
  /** Host address the forward listens on. */
  address: string;
  host: number;
  guest: number;
}

/** The forwards recorded in `file` at start, or undefined when there is no readable record. */
export function readForwards(file: string): ForwardRecord[] | undefined {
  try {
    const data = JSON.parse(Deno.readTextFileSync(file));
    return Array.isArray(data) ? data as ForwardRecord[] : undefined;
  } catch {
    return undefined;
  }
}

/** True if something is at `path`; a link counts as itself unless `follow` asks for its target. */
export function exists(path: string, options: { follow?: boolean } = {}): boolean {
  try {
    if (options.follow) Deno.statSync(path);
    else Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Removes `path` if it is there; true if it removed it. Never recursive. */
export function removeQuietly(path: string): boolean {
  try {
    Deno.removeSync(path);
    return true;
  } catch {
    return false;
  }
}
