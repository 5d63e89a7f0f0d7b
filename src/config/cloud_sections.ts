/**
 * The qvm extensions of maqet's format in one place, for `validateConfig`: `image` (with
 * `image_format` and `disk_size`), `allowed_backing_files`, `network`, `cloud_init` and
 * `guest_agent`. A section that is absent or `null` is not set.
 */
import { cloudInitOf, guestAgentOf } from "./cloud_init.ts";
import { allowedBackingOf, diskSizeOf, imageOf, pinnedImageFormat } from "./image.ts";
import { checkForwardsFree, networkOf, type PortHolder } from "./network.ts";
import type { VmConfig } from "./types.ts";
import { UsageError } from "../errors.ts";

/** The keys `cloudSectionsOf` validates. */
type CloudSections = Pick<
  VmConfig,
  | "image"
  | "image_format"
  | "disk_size"
  | "allowed_backing_files"
  | "network"
  | "cloud_init"
  | "guest_agent"
>;

/**
 * The validated extension sections of `raw`, only those that are set; a fixed host port in use is
 * an error naming its holder when `portHolder` knows it. The image's format is pinned here: the
 * one given, else the one its header says (see `pinnedImageFormat`).
 */
export function cloudSectionsOf(
  raw: Record<string, unknown>,
  warn: (message: string) => void,
  portHolder?: PortHolder,
): CloudSections {
  const out: CloudSections = {};
  if (raw.image !== undefined && raw.image !== null) {
    out.image = imageOf(raw.image);
    out.image_format = pinnedImageFormat(out.image, raw.image_format);
  }
  if (raw.disk_size !== undefined && raw.disk_size !== null) {
    out.disk_size = diskSizeOf(raw.disk_size);
  }
  const imageKey = raw.image_format !== undefined && raw.image_format !== null
    ? "image_format"
    : out.disk_size !== undefined
    ? "disk_size"
    : undefined;
  if (imageKey !== undefined && !out.image) {
    throw new UsageError(`${imageKey} needs image: (the base image of the root disk)`);
  }
  if (raw.allowed_backing_files !== undefined && raw.allowed_backing_files !== null) {
    out.allowed_backing_files = allowedBackingOf(raw.allowed_backing_files);
  }
  if (raw.network !== undefined && raw.network !== null) {
    out.network = networkOf(raw.network, warn);
    checkForwardsFree(out.network.ports, portHolder);
  }
  if (raw.cloud_init !== undefined && raw.cloud_init !== null) {
    out.cloud_init = cloudInitOf(raw.cloud_init, warn);
  }
  if (raw.guest_agent !== undefined && raw.guest_agent !== null) {
    out.guest_agent = guestAgentOf(raw.guest_agent);
  }
  return out;
}
