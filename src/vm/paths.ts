/** The files qvm keeps for one VM: sockets, pid file and lock in the runtime dir; logs and disks in the data dir. */
import { markersIn, type QemuMarkers } from "../qemu/process.ts";
import type { Dirs } from "../state/mod.ts";

function join(dir: string, ...names: string[]): string {
  return `${dir.endsWith("/") ? dir.slice(0, -1) : dir}/${names.join("/")}`;
}

/** The storage name and QEMU drive id of a VM's root disk, the overlay of its `image:`. */
export const ROOT_DRIVE = "qvm-root";

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
export function vmPaths(dirs: Dirs, id: string): VmPaths {
  const { pidFile, qmpSocket } = markersIn(dirs.runtimeDir, { id });
  return {
    qmpSocket,
    monitorSocket: join(dirs.runtimeDir, `${id}.mon`),
    eventSocket: join(dirs.runtimeDir, `${id}.evt`),
    serialSocket: join(dirs.runtimeDir, `${id}.serial`),
    bootFile: join(dirs.runtimeDir, `${id}.boot`),
    pidFile,
    lockFile: join(dirs.runtimeDir, `${id}.lock`),
    frozenFile: join(dirs.runtimeDir, `${id}.frozen`),
    serialLog: join(dirs.dataDir, "logs", `${id}.serial.log`),
    qemuLog: join(dirs.dataDir, "logs", `${id}.qemu.log`),
    diskDir: join(dirs.dataDir, "disks", id),
    rootOverlay: join(dirs.dataDir, "disks", id, "image-overlay.qcow2"),
  };
}

/**
 * What marks a process as this qvm's QEMU of VM `vm`: its id and the pid file and QMP socket in
 * this runtime dir that `start` launches it with (see `isOurQemu`).
 */
export function qemuMarkers(
  dirs: Dirs,
  vm: { id: string; config?: { binary?: string } },
): QemuMarkers {
  return markersIn(dirs.runtimeDir, vm);
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
