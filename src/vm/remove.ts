/**
 * Removing a VM: under its lock, refuse (or with `force`, stop) a live one, delete its row and its
 * runtime files and logs, and, when asked, the disks qvm created for it, except any file another
 * VM's config still names as a disk or a backing file. The lock file goes last, while held.
 */
import { diskFile } from "../config/mod.ts";
import { QvmError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { withVm } from "./guard.ts";
import { isLive } from "./observe.ts";
import { removeQuietly, runtimeFiles, vmPaths } from "./paths.ts";
import { stopLocked } from "./stop.ts";

/** What a removal did with the VM's disks. */
export interface Removed {
  vm: VmRecord;
  /** Files deleted (only with `deleteStorage`, only ones qvm created). */
  deleted: string[];
  /** Files qvm created but kept, with the reason (another VM uses them). */
  kept: { file: string; reason: string }[];
}

function realPath(file: string): string {
  try {
    return Deno.realPathSync(file);
  } catch {
    return file;
  }
}

/** Every image file other VMs' configs name (disks and backing files), real path → VM name. */
function filesInUse(env: VmEnv, except: string): Map<string, string> {
  const used = new Map<string, string>();
  for (const other of env.store.list()) {
    if (other.id === except) continue;
    const diskDir = vmPaths(env.dirs, other.id).diskDir;
    let storage;
    try {
      storage = other.config.storage;
    } catch {
      continue; // a stored config qvm cannot read names no files
    }
    for (const disk of storage) {
      if (disk.type === "virtfs") continue;
      const files = [diskFile(disk, diskDir), disk.backing_file];
      for (const file of files) if (file) used.set(realPath(file), other.name);
    }
  }
  return used;
}

/** Removes VM `vm` under its lock (stopping it first when `force`), within `deadline`. */
export function removeVm(
  env: VmEnv,
  vm: VmRecord,
  options: { deadline: Deadline; force?: boolean; deleteStorage?: boolean },
): Promise<Removed> {
  return withVm(env, vm, { deadline: options.deadline }, async (seen) => {
    if (isLive(seen.status)) {
      if (!options.force) {
        throw new QvmError(`VM '${vm.name}' is ${seen.status}: use --force to stop and remove it`);
      }
      const stopped = await stopLocked(env, seen, { deadline: options.deadline, force: true });
      if (stopped.unrecorded !== undefined) {
        throw new QvmError(
          `stopped VM '${vm.name}' but could not remove it: ${stopped.unrecorded}`,
        );
      }
    }
    const paths = vmPaths(env.dirs, vm.id);
    const inUse = options.deleteStorage ? filesInUse(env, vm.id) : new Map<string, string>();
    env.store.remove(vm.id);
    runtimeFiles(paths).forEach(removeQuietly);
    removeQuietly(paths.serialLog);
    removeQuietly(paths.qemuLog);
    const deleted: string[] = [];
    const kept: Removed["kept"] = [];
    if (options.deleteStorage) {
      for (const file of seen.vm.createdFiles) {
        const user = inUse.get(realPath(file));
        if (user !== undefined) kept.push({ file, reason: `VM '${user}' uses it` });
        else if (removeQuietly(file)) deleted.push(file);
      }
      removeQuietly(paths.diskDir); // only if empty: never a recursive delete
    }
    seen.lock.releaseAndRemove();
    return { vm: seen.vm, deleted, kept };
  });
}
