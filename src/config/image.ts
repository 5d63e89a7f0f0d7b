/**
 * The `image:` key, a qvm extension of maqet's format: the VM's root disk is a qcow2 overlay of
 * this base image (made at first start), so the image itself is never written.
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
