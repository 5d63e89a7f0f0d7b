/**
 * The qvm extensions of maqet's format in one place, for `validateConfig`: `image`, `network`,
 * `cloud_init` and `guest_agent`. A section that is absent or `null` is not set.
 */
import { cloudInitOf, guestAgentOf } from "./cloud_init.ts";
import { imageOf } from "./image.ts";
import { checkForwardsFree, networkOf, type PortHolder } from "./network.ts";
import type { VmConfig } from "./types.ts";

/**
 * The validated extension sections of `raw`, only those that are set; a fixed host port in use is
 * an error naming its holder when `portHolder` knows it.
 */
export function cloudSectionsOf(
  raw: Record<string, unknown>,
  warn: (message: string) => void,
  portHolder?: PortHolder,
): Pick<VmConfig, "image" | "network" | "cloud_init" | "guest_agent"> {
  const out: Pick<VmConfig, "image" | "network" | "cloud_init" | "guest_agent"> = {};
  if (raw.image !== undefined && raw.image !== null) out.image = imageOf(raw.image);
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
