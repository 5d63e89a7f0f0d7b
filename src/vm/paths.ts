/**
 * A VM's files as the vm layer uses them: their names and places and the two checks made on
 * them (`src/vm_files.ts`, which this passes on), and what marks its QEMU as qvm's.
 */
import { markersIn, type QemuMarkers } from "../qemu/process.ts";
import type { Dirs } from "../state/mod.ts";

export {
  exists,
  removeQuietly,
  ROOT_DRIVE,
  runtimeFiles,
  vmDiskFile,
  type VmPaths,
  vmPaths,
} from "../vm_files.ts";

/**
 * What marks a process as this qvm's QEMU of VM `vm`: its id and the pid file and QMP socket in
 * this runtime dir that `start` launches it with (see `isOurQemu`), and the pid the VM's row
 * records with the start time qvm verified it at.
 */
export function qemuMarkers(
  dirs: Dirs,
  vm: {
    id: string;
    config?: { binary?: string };
    pid?: number | null;
    pidStart?: number | null;
  },
): QemuMarkers {
  return markersIn(dirs.runtimeDir, vm);
}
