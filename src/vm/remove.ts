/**
 * Removing a VM: under its lock, refuse (or with `force`, stop) a live one, delete its row and its
 * runtime files and logs, and, when asked, the disks qvm created for it, except any file another
 * VM still reaches (as a disk, `image:`, backing file, QEMU option, or down a backing chain). The
 * lock file goes last, while held.
 */
import { QvmError } from "../errors.ts";
import { backingChain, qcow2Header } from "../qemu/img.ts";
import type { VmRecord } from "../state/mod.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { withVm } from "./guard.ts";
import { isLive, observe } from "./observe.ts";
import { cloudPaths, removeQuietly, runtimeFiles, vmPaths } from "../vm_files.ts";
import { stopLocked } from "./stop.ts";
import { type ReachedFile, reachedFiles } from "./storage.ts";
import { usesCloud } from "../cloud/paths.ts";

/** What a removal did with the VM's disks. */
export interface Removed {
  vm: VmRecord;
  /** Files deleted (only with `deleteStorage`, only ones qvm created). */
  deleted: string[];
  /** Files qvm created but kept, with the reason (another VM uses them). */
  kept: { file: string; reason: string }[];
}

/** Refuses the removal of VMs of which any is live (checked, all of them, before any is removed). */
export async function refuseLive(env: VmEnv, vms: readonly VmRecord[]): Promise<void> {
  for (const vm of vms) {
    const seen = await observe(env, vm, { qmp: false });
    if (isLive(seen.status)) {
      throw new QvmError(`VM '${vm.name}' is ${seen.status}: use --force to stop and remove it`);
    }
  }
}

function realPath(file: string): string {
  try {
    return Deno.realPathSync(file);
  } catch {
    return file;
  }
}

/** The files under `file` in its backing chain (`file` first), read as `format` (pinned). */
async function withBackingChain(file: string, format: string | undefined): Promise<string[]> {
  const pinned = format ?? (qcow2Header(file) !== undefined ? "qcow2" : undefined);
  // Only a regular qcow2 file that names a backing file has a chain to read (a fifo or a tty
  // another VM names is never opened: it could block or disturb it).
  if (pinned !== "qcow2" || qcow2Header(file)?.backing !== true) return [file];
  try {
    const layers = await backingChain(file, pinned);
    const below = layers.flatMap((l, i) => [...(i > 0 ? [l.file] : []), l.backing ?? ""]);
    return [file, ...new Set(below.filter((f) => f !== "" && f !== file))];
  } catch {
    return [file];
  }
}

/**
 * Every file other VMs' configs reach, real path → who and how (`VM 'b' uses it (image:)`): their
 * disks (the root overlay of an `image:` too), the backing files and images the configs name, what
 * the images' backing chains hold (read with qemu-img, format pinned), and any file in their QEMU
 * options (`-drive file=`, `-hda`, `-kernel`, ...).
 */
async function filesInUse(env: VmEnv, except: string): Promise<Map<string, string>> {
  const used = new Map<string, string>();
  const chains = new Map<string, Promise<string[]>>();
  for (const other of env.store.list()) {
    if (other.id === except) continue;
    let files: ReachedFile[];
    try {
      files = reachedFiles(other, env.dirs);
    } catch {
      continue; // a stored config qvm cannot read names no files
    }
    for (const file of files) {
      const key = `${file.format ?? ""}:${file.path}`;
      if (!chains.has(key)) chains.set(key, withBackingChain(file.path, file.format));
      const [top, ...below] = await chains.get(key)!;
      used.set(realPath(top), `VM '${other.name}' uses it (${file.via})`);
      for (const path of below) {
        used.set(
          realPath(path),
          `VM '${other.name}' uses it (in the backing chain of ${file.via})`,
        );
      }
    }
  }
  return used;
}

/** A cloud VM's own files: its agent socket, recorded forwards, and its seed/known_hosts folder. */
function removeCloudFiles(env: VmEnv, vm: VmRecord): void {
  // Only a VM with cloud parts has these files (no cloud module to load for the others).
  if (!usesCloud(vm.config) && vm.config.guest_agent === undefined) return;
  const files = cloudPaths(env.dirs, vm.id);
  removeQuietly(files.agentSocket);
  removeQuietly(files.forwardsFile);
  try {
    // qvm made this folder (seed, known_hosts, instance id); a link there is removed, not followed.
    if (Deno.lstatSync(files.dir).isDirectory) Deno.removeSync(files.dir, { recursive: true });
    else removeQuietly(files.dir);
  } catch { /* absent */ }
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
    const inUse = options.deleteStorage ? await filesInUse(env, vm.id) : new Map<string, string>();
    env.store.remove(vm.id);
    runtimeFiles(paths).forEach(removeQuietly);
    removeQuietly(paths.serialLog);
    removeQuietly(paths.qemuLog);
    removeCloudFiles(env, seen.vm);
    const deleted: string[] = [];
    const kept: Removed["kept"] = [];
    if (options.deleteStorage) {
      for (const file of seen.vm.createdFiles) {
        const reason = inUse.get(realPath(file));
        if (reason !== undefined) kept.push({ file, reason });
        else if (removeQuietly(file)) deleted.push(file);
      }
      removeQuietly(paths.diskDir); // only if empty: never a recursive delete
    }
    seen.lock.releaseAndRemove();
    return { vm: seen.vm, deleted, kept };
  });
}
