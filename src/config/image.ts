/**
 * The `image:` key, a qvm extension of maqet's format: the VM's root disk is a qcow2 overlay of
 * this base image (made at first start), so the image itself is never written. `image_format:`
 * pins the image's format (never probed again once recorded) and `disk_size:` makes the overlay
 * bigger than the image (the guest's cloud-init grows its root file system into it).
 */
import { NotFoundError, PermissionError, UsageError } from "../errors.ts";
import { show } from "./_util.ts";

/** Validates `image:`: an existing, readable regular file (its path already absolute). */
export function imageOf(value: unknown): string {
  if (typeof value !== "string" || value.trim() === "") {
    throw new UsageError(`invalid image ${show(value)}: expected the path of a disk image`);
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(value);
  } catch (error) {
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new PermissionError(`image ${show(value)}: permission denied`);
    }
    throw new NotFoundError(`image ${show(value)} not found`);
  }
  if (!info.isFile) throw new UsageError(`invalid image ${show(value)}: not a regular file`);
  try {
    Deno.openSync(value, { read: true }).close();
  } catch {
    throw new PermissionError(`image ${show(value)}: cannot be read`);
  }
  return value;
}

/** The formats a base image may have. */
export const IMAGE_FORMATS = ["qcow2", "raw"] as const;

/** A base image's format. */
export type ImageFormat = typeof IMAGE_FORMATS[number];

/** Validates `image_format:` (`qcow2` or `raw`). */
export function imageFormatOf(value: unknown): ImageFormat {
  if (typeof value === "string" && (IMAGE_FORMATS as readonly string[]).includes(value)) {
    return value as ImageFormat;
  }
  throw new UsageError(`invalid image_format ${show(value)}: use qcow2 or raw`);
}

/** `20G` → bytes; undefined when `text` is not a whole size with an optional K/M/G/T unit. */
function diskBytes(text: string): number | undefined {
  const match = /^(\d+)([KMGT])?$/i.exec(text.trim());
  if (!match) return undefined;
  const unit = match[2] ? "KMGT".indexOf(match[2].toUpperCase()) + 1 : 0;
  const bytes = Number(match[1]) * 1024 ** unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** The largest `disk_size` qvm accepts (qcow2 itself allows more; no guest needs it). */
const MAX_DISK_BYTES = 64 * 1024 ** 4;

/** Validates `disk_size:` (the root overlay's size, e.g. `20G`): from 1M to 64T, normalized. */
export function diskSizeOf(value: unknown): string {
  const text = typeof value === "number" ? `${value}` : value;
  const bytes = typeof text === "string" ? diskBytes(text) : undefined;
  if (bytes === undefined || bytes < 1024 ** 2 || bytes > MAX_DISK_BYTES) {
    throw new UsageError(`invalid disk_size ${show(value)}: use a size like 20G (1M to 64T)`);
  }
  return (text as string).trim().toUpperCase().replace(/^0+(?=\d)/, "");
}
