/**
 * A VM's files as the vm layer uses them: their names and places (`src/vm_files.ts`, which this
 * passes on), what marks its QEMU as qvm's, and the two checks made on them.
 */
import { markersIn, type QemuMarkers } from "../qemu/process.ts";
import type { Dirs } from "../state/mod.ts";

export { ROOT_DRIVE, runtimeFiles, vmDiskFile, type VmPaths, vmPaths } from "../vm_files.ts";

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
