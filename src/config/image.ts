/**
 * The `image:` key, a qvm extension of maqet's format: the VM's root disk is a qcow2 overlay of
 * this base image (made at first start), so the image itself is never written. `disk_size:` makes
 * the overlay bigger than the image (the guest's cloud-init grows its root file system into it).
 * Images are untrusted files (downloaded cloud images): their format is pinned (`image_format:`,
 * else what the file's header says when the VM is defined, recorded then) and never guessed
 * again, and no file of a backing chain may be one the config does not name
 * (`allowed_backing_files:`).
 */
import { NotFoundError, PermissionError, UsageError } from "../errors.ts";
import { isAbsolute, resolve } from "../path.ts";
import { kindOf, show } from "./_util.ts";
import { parseSize, sizeBytes } from "./size.ts";

/**
 * `path` when it is a regular file that can be read: exit 3 when missing or not a file, 4 when it
 * cannot be read. `key` names it in messages, `where` follows (" for storage 'hdd'").
 */
export function readableFile(key: string, path: string, where = ""): string {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new PermissionError(`${key} ${show(path)}${where}: permission denied`);
    }
    throw new NotFoundError(`${key} ${show(path)}${where} not found`);
  }
  if (!info.isFile) {
    throw new UsageError(`invalid ${key} ${show(path)}${where}: not a regular file`);
  }
  try {
    Deno.openSync(path, { read: true }).close();
  } catch {
    throw new PermissionError(`${key} ${show(path)}${where}: cannot be read`);
  }
  return path;
}

/** Validates `image:`: an existing, readable regular file (its path already absolute). */
export function imageOf(value: unknown): string {
  if (typeof value !== "string" || value.trim() === "") {
    throw new UsageError(`invalid image ${show(value)}: expected the path of a disk image`);
  }
  return readableFile("image", value);
}

/** The formats a base image may have. */
export const IMAGE_FORMATS = ["qcow2", "raw"] as const;

/** A base image's format. */
export type ImageFormat = typeof IMAGE_FORMATS[number];

/** Validates `image_format:` (`qcow2` or `raw`, in any case). */
export function imageFormatOf(value: unknown): ImageFormat {
  const format = typeof value === "string" ? value.toLowerCase() : value;
  if (typeof format === "string" && (IMAGE_FORMATS as readonly string[]).includes(format)) {
    return format as ImageFormat;
  }
  throw new UsageError(`invalid image_format ${show(value)}: use qcow2 or raw`);
}

/** Headers of formats qvm does not open, by their first bytes (QEMU's own probes). */
const OTHER_FORMATS: [string, string][] = [
  ["KDMV", "vmdk"],
  ["# Disk DescriptorFile", "vmdk"],
  ["QED\0", "qed"],
  ["conectix", "vpc"],
  ["vhdxfile", "vhdx"],
  ["LUKS\xba\xbe", "luks"],
  ["<<< ", "vdi"],
];

/**
 * The format image `file` is opened as: `given` (`image_format:`) when set, else what its header
 * says, read once when the VM is defined and recorded then: qcow2 (magic `QFI\xfb`) or raw. An
 * image in another format (vmdk, vdi, ...) is refused with the way to convert it.
 */
export function pinnedImageFormat(file: string, given?: unknown): ImageFormat {
  if (given !== undefined && given !== null) return imageFormatOf(given);
  const head = new Uint8Array(64);
  let length = 0;
  try {
    const handle = Deno.openSync(file, { read: true });
    try {
      length = handle.readSync(head) ?? 0;
    } finally {
      handle.close();
    }
  } catch {
    throw new PermissionError(`image ${show(file)}: cannot be read`);
  }
  const text = String.fromCharCode(...head.subarray(0, length));
  if (text.startsWith("QFI\xfb")) return "qcow2";
  const other = OTHER_FORMATS.find(([magic]) => text.startsWith(magic));
  if (other) {
    throw new UsageError(
      `image ${show(file)} is in ${other[1]} format; qvm runs qcow2 and raw images: convert ` +
        `it with 'qemu-img convert -f ${other[1]} -O qcow2 FILE NEW.qcow2'`,
    );
  }
  return "raw";
}

/** The largest `disk_size` qvm accepts (qcow2 itself allows more; no guest needs it). */
const MAX_DISK_BYTES = 64n * 1024n ** 4n;

/** Validates `disk_size:` (the root overlay's size, e.g. `20G`): from 1M to 64T, normalized. */
export function diskSizeOf(value: unknown): string {
  const size = parseSize(typeof value === "string" ? value.trim() : value, "");
  const bytes = size === undefined ? undefined : sizeBytes(size);
  if (bytes === undefined || bytes < 1024n ** 2n || bytes > MAX_DISK_BYTES) {
    throw new UsageError(`invalid disk_size ${show(value)}: use a size like 20G (1M to 64T)`);
  }
  return size!;
}

/**
 * Validates `allowed_backing_files:`: the host files a backing chain (of `image`, or of a qcow2
 * disk) may name besides what the config names itself; absolute paths (made so at load).
 */
export function allowedBackingOf(value: unknown): string[] {
  if (!Array.isArray(value)) {
    throw new UsageError(
      `invalid allowed_backing_files ${show(value)}: expected a list of files, got ${
        kindOf(value)
      }`,
    );
  }
  return value.map((item, i) => {
    if (typeof item !== "string" || item.trim() === "" || !isAbsolute(item)) {
      throw new UsageError(
        `invalid allowed_backing_files[${i}] ${show(item)}: expected the path of a file`,
      );
    }
    return item;
  });
}

/** Resolves the relative files of `allowed_backing_files` against the config's folder `dir`. */
export function resolveBackingPaths(config: Record<string, unknown>, dir: string): void {
  if (!Array.isArray(config.allowed_backing_files)) return;
  config.allowed_backing_files = config.allowed_backing_files.map((item) =>
    typeof item === "string" && item.trim() !== "" && !isAbsolute(item) ? resolve(dir, item) : item
  );
}
