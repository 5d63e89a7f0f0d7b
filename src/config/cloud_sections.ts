/**
 * The qvm extensions of maqet's format in one place, for `validateConfig`: `image` (with
 * `image_format` and `disk_size`), `network`, `cloud_init` and `guest_agent`. A section that is absent or `null` is not set.
 */
import { cloudInitOf, guestAgentOf } from "./cloud_init.ts";
import { diskSizeOf, imageFormatOf, imageOf } from "./image.ts";
import { checkForwardsFree, networkOf, type PortHolder } from "./network.ts";
import type { VmConfig } from "./types.ts";
import { UsageError } from "../errors.ts";

type CloudSections = Pick<
  VmConfig,
  "image" | "image_format" | "disk_size" | "network" | "cloud_init" | "guest_agent"
>;

/**
 * The validated extension sections of `raw`, only those that are set; a fixed host port in use is
 * an error naming its holder when `portHolder` knows it.
 */
export function cloudSectionsOf(
  raw: Record<string, unknown>,
  warn: (message: string) => void,
  portHolder?: PortHolder,
): CloudSections {
  const out: CloudSections = {};
  if (raw.image !== undefined && raw.image !== null) out.image = imageOf(raw.image);
  if (raw.image_format !== undefined && raw.image_format !== null) {
    out.image_format = imageFormatOf(raw.image_format);
  }
  if (raw.disk_size !== undefined && raw.disk_size !== null) {
    out.disk_size = diskSizeOf(raw.disk_size);
  }
  if ((out.image_format || out.disk_size) && !out.image) {
    throw new UsageError(
      `${out.image_format ? "image_format" : "disk_size"} needs image: (the base image of the ` +
        "root disk)",
    );
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
