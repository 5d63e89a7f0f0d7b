/**
 * The waits of `--wait-for ssh` and `--wait-for agent`: whether one can succeed for a VM, and
 * the loop that probes the guest until it answers, QEMU's own checks running all along.
 */
import { TimeoutError } from "../errors.ts";
import type { Dirs, VmRecord } from "../state/mod.ts";
import { sleep } from "../timers.ts";
import { cloudPaths } from "../vm_files.ts";
import { agentPing } from "./agent.ts";
import { forwardTo } from "./ports.ts";
import { noSshForward, sshCommand } from "./ssh_target.ts";
import { requireAgentChannel } from "./status.ts";

/**
 * The command `--wait-for ssh` runs for a VM with `cloud_init`: it succeeds once cloud-init has
 * finished this boot (or is not installed), so a start does not return while cloud-init still
 * creates users or restarts sshd. It waits in the guest (`status --wait`, one Python process
 * that sleeps between looks) rather than being run again every second: each run costs an SSH
 * handshake and a Python start-up, seconds of CPU for a guest under TCG, taken from cloud-init.
 */
export const CLOUD_INIT_DONE = "command -v cloud-init >/dev/null || exit 0; " +
  "cloud-init status --wait >/dev/null 2>&1; " +
  "cloud-init status 2>/dev/null | grep -Eq '^status: (done|error|degraded|disabled)'";

/** Throws a UsageError when `--wait-for kind` cannot succeed for `vm` (no forward, no channel). */
export function checkWaitable(vm: VmRecord, kind: "ssh" | "agent"): void {
  if (kind === "agent") requireAgentChannel(vm);
  if (kind === "ssh" && !forwardTo(vm.config.network?.ports ?? [], 22)) throw noSshForward(vm);
}

/** How often `waitForGuest` calls its `check`, the probe running or not. */
const CHECK_EVERY_MS = 250;

/**
 * Waits until the guest answers: `ssh` runs a command over SSH (with `cloud_init`, one that
 * succeeds once cloud-init has finished), `agent` gets a `guest-ping` reply. `check` runs about
 * every 250 ms all along, probes included: what it throws (QEMU gone, a fault state) ends the wait
 * at once, killing a running probe. A TimeoutError when `deadline` (epoch ms) passes.
 */
export async function waitForGuest(
  env: { dirs: Dirs; warn?(message: string): void },
  vm: VmRecord,
  options: { kind: "ssh" | "agent"; deadline: number; check: () => Promise<void> },
): Promise<void> {
  const { kind, deadline } = options;
  if (kind === "agent") requireAgentChannel(vm);
  const socket = cloudPaths(env.dirs, vm.id).agentSocket;
  const probe = vm.config.cloud_init ? CLOUD_INIT_DONE : "true";
  const argv = kind === "ssh"
    ? await sshCommand(env.dirs, vm, {
      command: [probe],
      batch: true,
      connectTimeoutS: 5,
      warn: (message) => env.warn?.(message),
    })
    : [];
  await options.check();
  const stop = new AbortController();
  const probing = (async () => {
    while (Date.now() < deadline && !stop.signal.aborted) {
      const started = Date.now();
      if (kind === "agent") {
        if (await agentPing(socket, Math.min(3000, Math.max(deadline - Date.now(), 1)))) return;
      } else if (await answers(argv, { deadline, signal: stop.signal })) {
        return;
      }
      const spent = Date.now() - started;
      if (spent < 1000 && !stop.signal.aborted) await sleep(1000 - spent);
    }
    if (!stop.signal.aborted) {
      throw new TimeoutError(`the guest did not answer over ${kind} in time`);
    }
  })();
  const watching = (async () => {
    while (!stop.signal.aborted) {
      await sleep(CHECK_EVERY_MS);
      if (!stop.signal.aborted) await options.check();
    }
  })();
  try {
    await Promise.race([probing, watching]);
  } finally {
    stop.abort();
    probing.catch(() => {});
    watching.catch(() => {});
  }
}

/** Runs the ssh probe once, killed at `deadline` or when `signal` aborts; true when it exits 0. */
async function answers(
  argv: string[],
  options: { deadline: number; signal?: AbortSignal },
): Promise<boolean> {
  const { deadline, signal } = options;
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch { /* ended */ }
  };
  const timer = setTimeout(kill, Math.max(deadline - Date.now(), 1));
  signal?.addEventListener("abort", kill);
  try {
    return (await child.status).success;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", kill);
  }
}
