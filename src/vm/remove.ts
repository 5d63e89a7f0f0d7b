/**
 * Removing a VM: under its lock, refuse (or with `force`, stop) a live one, delete its row and its
 * runtime files and logs, and, when asked, the disks qvm created for it, except any file another
 * VM still uses (its config names it, or its images' backing chain does). The lock file goes
 * last, while held.
 */
import { dirname, resolve } from "../path.ts";
import { diskFile } from "../config/mod.ts";
import { QvmError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { withVm } from "./guard.ts";
import { isLive } from "./observe.ts";
import { removeQuietly, runtimeFiles, vmPaths } from "./paths.ts";
import { stopLocked } from "./stop.ts";
import { cloudModule } from "../lazy.ts";

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

/**
 * The absolute paths in QEMU option values (`arguments` items, raw `args`): a whole value
 * (`hda: /x/d.img`), a `key=/path` part of option text (`-drive file=/x/d.img,if=virtio`), or a
 * short-form character device (`file:/x/log`). Stored configs hold absolute paths only.
 */
function pathsInOptions(value: unknown, found: string[]): string[] {
  if (typeof value === "string") {
    for (const part of value.replaceAll(",,", "\0").split(",")) {
      const text = part.replaceAll("\0", ",");
      const at = text.indexOf("=");
      const path = (at >= 0 ? text.slice(at + 1) : text).replace(/^(file|pipe|unix):/, "");
      if (path.startsWith("/")) found.push(path);
      if (text.startsWith("/") && text !== path) found.push(text);
    }
  } else if (Array.isArray(value)) {
    for (const element of value) pathsInOptions(element, found);
  } else if (value !== null && typeof value === "object") {
    for (const element of Object.values(value)) pathsInOptions(element, found);
  }
  return found;
}

const QCOW2_MAGIC = 0x514649fb;

/** The backing file a qcow2 image's header names (resolved), or undefined. */
function qcow2Backing(file: string): string | undefined {
  let image: Deno.FsFile | undefined;
  try {
    // Only a regular file: opening a fifo or a tty another VM names could block or disturb it.
    if (!Deno.statSync(file).isFile) return undefined;
    image = Deno.openSync(file, { read: true });
    const head = new Uint8Array(20);
    if ((image.readSync(head) ?? 0) < 20) return undefined;
    const view = new DataView(head.buffer);
    if (view.getUint32(0) !== QCOW2_MAGIC) return undefined;
    const offset = Number(view.getBigUint64(8));
    const size = view.getUint32(16);
    if (offset === 0 || size === 0 || size > 4096) return undefined;
    const name = new Uint8Array(size);
    image.seekSync(offset, Deno.SeekMode.Start);
    if ((image.readSync(name) ?? 0) < size) return undefined;
    const backing = new TextDecoder().decode(name);
    if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(backing) && !backing.startsWith("file:")) return undefined;
    return resolve(dirname(file), backing.replace(/^file:/, ""));
  } catch {
    return undefined;
  } finally {
    image?.close();
  }
}

/** `file` and the files under it in its qcow2 backing chain (as the images' headers name them). */
function withBackingChain(file: string): string[] {
  const chain = [file];
  for (let next = qcow2Backing(file); next && chain.length < 64; next = qcow2Backing(next)) {
    if (chain.includes(next)) break;
    chain.push(next);
  }
  return chain;
}

/**
 * Every file other VMs' configs name, real path → VM name: their disks and the backing files the
 * config or the images themselves name, and any path in their QEMU options (`-drive file=`,
 * `hda`, `cdrom`, ...).
 */
function filesInUse(env: VmEnv, except: string): Map<string, string> {
  const used = new Map<string, string>();
  for (const other of env.store.list()) {
    if (other.id === except) continue;
    const diskDir = vmPaths(env.dirs, other.id).diskDir;
    let files: string[];
    try {
      const config = other.config;
      files = pathsInOptions([config.arguments, config.args], []);
      for (const disk of config.storage) {
        if (disk.type === "virtfs") continue;
        files.push(diskFile(disk, diskDir));
        if (disk.backing_file) files.push(disk.backing_file);
      }
    } catch {
      continue; // a stored config qvm cannot read names no files
    }
    for (const file of files.flatMap(withBackingChain)) used.set(realPath(file), other.name);
  }
  return used;
}

/** A cloud VM's own files: its agent socket, recorded forwards, and its seed/known_hosts folder. */
async function removeCloudFiles(env: VmEnv, vm: VmRecord): Promise<void> {
  const { cloudPaths, usesCloud } = await cloudModule();
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
    const inUse = options.deleteStorage ? filesInUse(env, vm.id) : new Map<string, string>();
    env.store.remove(vm.id);
    runtimeFiles(paths).forEach(removeQuietly);
    removeQuietly(paths.serialLog);
    removeQuietly(paths.qemuLog);
    await removeCloudFiles(env, seen.vm);
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
