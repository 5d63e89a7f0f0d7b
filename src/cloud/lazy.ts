/**
 * The cloud modules, loaded when a command needs them (see `src/lazy.ts`): VMs without cloud
 * sections never pay for them. Importing this file loads none of them. (`status` keeps its own
 * loader of `cloud/status.ts`, in `cli/status.ts`, so that it loads not even this file.)
 */
import { lazyImport } from "../lazy.ts";

/** The cloud module (ports, cloud-init seed, ssh, guest agent wiring). */
export const cloudModule = () => lazyImport<typeof import("./mod.ts")>("src/cloud/mod.ts");
/** The guest agent client. */
export const agentModule = () => lazyImport<typeof import("./agent.ts")>("src/cloud/agent.ts");
/** Base images and their overlays. */
export const imageModule = () => lazyImport<typeof import("./image.ts")>("src/cloud/image.ts");
