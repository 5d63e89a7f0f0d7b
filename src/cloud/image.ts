/**
 * `image:` at start: the VM's root disk is a qcow2 overlay of the base image, made on first start
 * in the VM's disk folder and kept across starts. The base image is only ever read; a start is
 * refused while a running VM writes to it.
 */
import {
  diskFile,
  escapeOptionValue,
  type ImageFormat,
  imageOf,
  sizeBytes,
} from "../config/mod.ts";
import { UsageError } from "../errors.ts";
import { asidePath, backingChain, createAside, qemuImg } from "../qemu/img.ts";
import { isOurQemu, markersIn } from "../qemu/process.ts";
import { type Dirs, ensurePrivateDir, type StateStore, type VmRecord } from "../state/mod.ts";
import { ROOT_DRIVE, vmPaths } from "../vm_files.ts";

/** The overlay file of VM `id`. */
export function overlayPath(dirs: Dirs, id: string): string {
  return vmPaths(dirs, id).rootOverlay;
}

/**
 * QEMU options for the overlay: a `-device` virtio disk, which QEMU creates before the config's
 * own `if=virtio` drives, so it is the first one (`vda`) and the one the BIOS boots.
 */
export function rootDriveArgv(overlay: string): string[] {
  return [
    "-drive",
    `if=none,id=${ROOT_DRIVE},file=${escapeOptionValue(overlay)},format=qcow2`,
    "-device",
    `virtio-blk-pci,drive=${ROOT_DRIVE}`,
  ];
}

function real(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

/** The running VM (other than `id`) whose disks include `image`, if any. */
export function runningWriterOf(
  env: { dirs: Dirs; store: StateStore },
  image: string,
  id: string,
): VmRecord | undefined {
  const target = real(image);
  for (const other of env.store.list()) {
    if (other.id === id || !isOurQemu(other.pid, markersIn(env.dirs.runtimeDir, other))) continue;
    const files = other.config.storage.flatMap((d) =>
      d.type === "virtfs" ? [] : [diskFile(d, vmPaths(env.dirs, other.id).diskDir)]
    );
    if (other.config.image) files.push(overlayPath(env.dirs, other.id));
    if (files.some((file) => real(file) === target)) return other;
  }
  return undefined;
}

/** What `qemu-img info` says of an overlay that qvm reads. */
interface OverlayInfo {
  "backing-filename"?: string;
  "full-backing-filename"?: string;
  "virtual-size"?: number;
}

/**
 * Refuses a `disk_size` smaller than VM `vm`'s root overlay already is (a root disk only grows);
 * a VM whose overlay is not made yet passes.
 */
export async function checkRootDiskSize(
  dirs: Dirs,
  vm: { id: string; name: string; size: string },
): Promise<void> {
  const overlay = overlayPath(dirs, vm.id);
  try {
    Deno.lstatSync(overlay);
  } catch {
    return;
  }
  const info: OverlayInfo = JSON.parse(
    await qemuImg(["info", "-U", "-f", "qcow2", "--output=json", overlay]),
  );
  const current = info["virtual-size"] ?? 0;
  if (sizeBytes(vm.size) < BigInt(current)) {
    throw new UsageError(
      `VM '${vm.name}': disk_size ${vm.size} is smaller than its root disk (${current} bytes): ` +
        "a root disk only grows",
    );
  }
}

/**
 * Makes the overlay of `image` for VM `vm` unless it is there (recording it as a file qvm made,
 * so `rm --delete-storage` removes it), and returns its path: over the image read as its pinned
 * `format` (never guessed), `size` big when given (`disk_size`; an existing overlay smaller than
 * that is grown). An overlay over another file or format is refused rather than silently reused.
 * The image's own chain is checked before (see `checkConfigChains`).
 */
export async function ensureOverlay(
  env: { dirs: Dirs; store?: StateStore },
  vm: { id: string; name: string; image: string; format: ImageFormat; size?: string },
): Promise<string> {
  // The image may have gone (or changed) since add: one line, exit 3, before anything is made.
  imageOf(vm.image);
  if (env.store) {
    const writer = runningWriterOf({ dirs: env.dirs, store: env.store }, vm.image, vm.id);
    if (writer) {
      throw new UsageError(
        `image '${vm.image}' is a disk that running VM '${writer.name}' writes to: stop it or ` +
          "use a copy",
      );
    }
  }
  const overlay = overlayPath(env.dirs, vm.id);
  const diskDir = overlay.slice(0, overlay.lastIndexOf("/"));
  ensurePrivateDir(diskDir, { within: env.dirs.dataDir });
  let exists = true;
  try {
    Deno.lstatSync(overlay);
  } catch {
    exists = false;
  }
  const recorded = env.store?.get(vm.id)?.createdFiles ?? [];
  if (exists) {
    const [top] = await backingChain(overlay, "qcow2", () => false);
    const backing = top.backing ?? "";
    if (real(backing) !== real(vm.image) || top.dataFile !== undefined) {
      throw new UsageError(
        `VM '${vm.name}' has a root disk over '${backing}', not over image '${vm.image}': ` +
          `remove ${overlay} to start over from the new image`,
      );
    }
    if (top.backingFormat !== vm.format) {
      throw new UsageError(
        `VM '${vm.name}' has a root disk that opens image '${vm.image}' as ` +
          `${top.backingFormat ?? "a guessed format"}, not as ${vm.format}: remove ${overlay} ` +
          "to start over from the image",
      );
    }
    // qvm made it (its own name in the VM's own folder); one an older qvm left unrecorded is
    // recorded now, so `rm --delete-storage` removes it and `storage orphaned` does not list it.
    if (!recorded.includes(overlay)) env.store?.addCreatedFile(vm.id, overlay);
    // A disk_size raised since the overlay was made (`apply --disk-size`) grows it; none shrinks it.
    if (vm.size !== undefined && sizeBytes(vm.size) > BigInt(top.virtualSize ?? 0)) {
      await qemuImg(["resize", "-q", "-f", "qcow2", "--", overlay, vm.size]);
    }
    return overlay;
  }
  // The size is checked only when the overlay grows it.
  if (vm.size !== undefined) {
    const info = JSON.parse(
      await qemuImg(["info", "-U", "--output=json", "-f", vm.format, "--", vm.image]),
    );
    if (sizeBytes(vm.size) < BigInt(info["virtual-size"] ?? 0)) {
      throw new UsageError(
        `VM '${vm.name}': disk_size ${vm.size} is smaller than image '${vm.image}' ` +
          `(${info["virtual-size"]} bytes); the root disk can only grow`,
      );
    }
  }
  const size = vm.size === undefined ? [] : [vm.size];
  // Recorded before it is made, made aside and linked into place: a kill at any point leaves
  // neither an unrecorded overlay nor a short one.
  const aside = asidePath(overlay);
  const unfinished = recorded.includes(aside);
  env.store?.recordCreating(vm.id, [overlay, aside]);
  try {
    await createAside(overlay, {
      make: (target) =>
        qemuImg([
          "create",
          "-q",
          "-f",
          "qcow2",
          "-b",
          vm.image,
          "-F",
          vm.format,
          "--",
          target,
          ...size,
        ]),
      what: `the root disk of VM '${vm.name}'`,
      replaceAside: unfinished,
    });
  } catch (error) {
    if (!recorded.includes(overlay)) env.store?.forgetCreatedFile(vm.id, overlay);
    env.store?.forgetCreatedFile(vm.id, aside);
    throw error;
  }
  env.store?.forgetCreatedFile(vm.id, aside);
  return overlay;
}
