/**
 * Cloud VMs: what `start` adds for a VM with `image:`, `network:`, `cloud_init:` or
 * `guest_agent:` (`prepare.ts`), how ssh reaches it (`ssh_target.ts`), the waits for SSH and the
 * guest agent (`guest_wait.ts`), and what `status` and `ports` show (`status.ts`). Loaded lazily
 * (`cloudModule`): VMs without these sections never import it. Re-exports only.
 */
export { agentArgv, cloudArgvPreview, prepareCloud } from "./prepare.ts";
export { usesCloud } from "./paths.ts";
export { invokingUser } from "./seed.ts";
export { sshCommand, sshForward, sshNotAnswering, sshTarget, vmForwards } from "./ssh_target.ts";
export { checkWaitable, CLOUD_INIT_DONE, waitForGuest } from "./guest_wait.ts";
export { activeForwards, agentEnabled, requireAgentChannel } from "./status.ts";
export type { ActiveForward } from "./ports.ts";
