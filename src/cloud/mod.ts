/**
 * Cloud VMs: what `start` adds for a VM with `network:`, `cloud_init:` or `guest_agent:` (port
 * forwards, the NoCloud seed, the guest agent channel) and the waits for SSH and the agent.
 * Loaded lazily: VMs without these sections never import it.
 */
import {
  escapeOptionValue,
  formatForward,
  isPublicKeyLine,
  isSystemAccount,
  pinnedImageFormat,
  type PortForward,
  type VmConfig,
} from "../config/mod.ts";
import { TimeoutError, UsageError } from "../errors.ts";
import { type Dirs, ensurePrivateDir, type StateStore, type VmRecord } from "../state/mod.ts";
import { ensureOverlay, overlayPath, rootDriveArgv } from "./image.ts";
import { optionForwards } from "../qemu/reach.ts";
import { agentPing } from "./agent.ts";
import { portHolder } from "./paths.ts";
import { cloudPaths } from "../vm_files.ts";
import {
  type ActiveForward,
  autoPortsOf,
  forwardTo,
  macFor,
  networkArgv,
  readAutoPorts,
  recordForwards,
  settleForwards,
  writeJsonFile,
} from "./ports.ts";
import {
  findIsoTool,
  instanceId,
  SEED_LABEL,
  seedDriveArgv,
  seedFiles,
  seedUser,
  writeSeed,
} from "./seed.ts";
import {
  clearForeignFile,
  ensureKey,
  homeKeys,
  keyPaths,
  sshArgv,
  type SshArgvOptions,
  sshServerAnswers,
  type SshTarget,
} from "./ssh.ts";
import { sleep } from "../timers.ts";

export { activeForwards, agentEnabled, requireAgentChannel } from "./status.ts";
import { activeForwards, agentEnabled, requireAgentChannel } from "./status.ts";
export type { ActiveForward } from "./ports.ts";

/** Whether a VM uses any cloud section (and so needs this module at start). */
export { usesCloud } from "./paths.ts";

/**
 * The login name of the user running qvm (cloud_init's default user); `qvm` when that is root or
 * another account the guest keeps for itself.
 */
export function invokingUser(): string {
  const name = Deno.env.get("USER") ?? Deno.env.get("LOGNAME") ?? "";
  return /^[a-z_][a-z0-9_-]{0,31}$/.test(name) && !isSystemAccount(name) ? name : "qvm";
}

/** The QEMU options of the guest agent channel on `socket`. */
export function agentArgv(socket: string): string[] {
  return [
    "-chardev",
    `socket,id=qvm-ga,path=${escapeOptionValue(socket)},server=on,wait=off`,
    "-device",
    "virtio-serial-pci,id=qvm-vser",
    "-device",
    "virtserialport,bus=qvm-vser.0,chardev=qvm-ga,name=org.qemu.guest_agent.0",
  ];
}

/**
 * Settles `ports` for a start of `vm`: `auto` ones keep the host ports they got before (while
 * free), and the ports picked now are kept for the next start.
 */
function settleNetwork(
  env: { dirs: Dirs; store?: StateStore; warn?(message: string): void },
  vm: { id: string; name: string },
  ports: readonly PortForward[],
): ActiveForward[] {
  const paths = cloudPaths(env.dirs, vm.id);
  const previous = readAutoPorts(paths.autoPortsFile);
  const store = env.store;
  const forwards = settleForwards(ports, {
    previous,
    holderOf: store ? (forward) => portHolder({ dirs: env.dirs, store }, forward) : undefined,
    note: (message) => env.warn?.(`VM '${vm.name}': ${message}`),
  });
  const picks = autoPortsOf(ports, forwards);
  const changed = Object.keys(picks).length !== Object.keys(previous).length ||
    Object.entries(picks).some(([spec, port]) => previous[spec] !== port);
  if (changed) {
    ensurePrivateDir(paths.dir, { within: env.dirs.dataDir });
    writeJsonFile(paths.autoPortsFile, picks);
  }
  return forwards;
}

/**
 * Prepares a start: settles the port forwards (`auto` ones keep their earlier host ports while
 * free; a fixed port in use is a UsageError, before anything else is made), makes the root overlay of `image`, builds the seed, records the forwards,
 * and returns the QEMU options to add.
 */
export async function prepareCloud(
  env: { dirs: Dirs; store?: StateStore; warn?(message: string): void },
  vm: { id: string; name: string; config: VmConfig },
): Promise<string[]> {
  const paths = cloudPaths(env.dirs, vm.id);
  const { config } = vm;
  const forwards = config.network ? settleNetwork(env, vm, config.network.ports) : undefined;
  const argv: string[] = [];
  if (config.image) {
    argv.push(...rootDriveArgv(
      await ensureOverlay(env, {
        ...vm,
        image: config.image,
        format: config.image_format ?? pinnedImageFormat(config.image),
        size: config.disk_size,
      }),
    ));
  }
  const mac = macFor(vm.id);
  if (forwards) argv.push(...networkArgv(forwards, mac));
  if (config.cloud_init) {
    const section = config.cloud_init;
    const own = section.user_data === undefined
      ? await ensureKey(env.dirs.dataDir, { warn: env.warn })
      : "";
    ensurePrivateDir(paths.dir, { within: env.dirs.dataDir });
    const id = instanceId(vm.name, section);
    let previous: string | undefined;
    try {
      previous = Deno.readTextFileSync(paths.instanceIdFile).trim();
    } catch { /* first start */ }
    if (previous !== id) {
      // A new instance makes new host keys: forget the old ones.
      try {
        Deno.removeSync(paths.knownHosts);
      } catch { /* none yet */ }
    }
    const files = seedFiles({
      name: vm.name,
      section,
      defaultUser: invokingUser(),
      keys: { own, home: section.ssh_authorized_keys ? [] : homeKeys(isPublicKeyLine) },
      mac: forwards ? mac : undefined,
    });
    argv.push(...seedDriveArgv(await writeSeed(paths.seedDir, files)));
    clearForeignFile(paths.instanceIdFile, env.warn);
    Deno.writeTextFileSync(paths.instanceIdFile, id + "\n", { mode: 0o600 });
  }
  if (agentEnabled(config)) argv.push(...agentArgv(paths.agentSocket));
  ensurePrivateDir(env.dirs.runtimeDir);
  if (forwards) recordForwards(paths.forwardsFile, forwards);
  return argv;
}

/**
 * What `prepareCloud` would add, without making anything (for `start --dry-run`): an `auto` host
 * port shows the port an earlier start picked and the next start keeps while it is free; one
 * never picked shows as 0, which QEMU also accepts (it then binds a free port it does not report).
 */
export function cloudArgvPreview(
  env: { dirs: Dirs },
  vm: { id: string; config: VmConfig },
): string[] {
  const paths = cloudPaths(env.dirs, vm.id);
  const { config } = vm;
  const argv: string[] = [];
  if (config.image) argv.push(...rootDriveArgv(overlayPath(env.dirs, vm.id)));
  if (config.network) {
    const kept = readAutoPorts(paths.autoPortsFile);
    const forwards = config.network.ports.map((f) => ({
      ...f,
      host: f.host === "auto" ? kept[formatForward(f)] ?? 0 : f.host,
    }));
    argv.push(...networkArgv(forwards, macFor(vm.id)));
  }
  if (config.cloud_init) {
    const tool = findIsoTool();
    argv.push(...seedDriveArgv(
      tool
        ? { kind: "iso", tool, file: `${paths.dir}/${SEED_LABEL}.iso` }
        : { kind: "vvfat", dir: paths.seedDir },
    ));
  }
  if (agentEnabled(config)) argv.push(...agentArgv(paths.agentSocket));
  return argv;
}

/** Why a VM cannot be reached over SSH: no forward to guest port 22. */
function noSshForward(vm: VmRecord): UsageError {
  return new UsageError(
    `VM '${vm.name}' forwards no host port to guest port 22: add network: {ports: ["auto:22"]}`,
  );
}

/**
 * The forward to guest port 22 as `qvm ports` shows it: the one in effect while the VM runs
 * (its `auto` port picked), else as configured (`auto` then stays `auto`); then one written as
 * `hostfwd=` in the config's own QEMU options.
 */
export function sshForward(
  dirs: Dirs,
  vm: VmRecord,
  running: boolean,
): PortForward | ActiveForward | undefined {
  const forwards = [
    ...(running ? activeForwards(dirs, vm.id) : undefined) ?? vm.config.network?.ports ?? [],
    ...optionForwards(vm.config),
  ];
  return forwardTo<PortForward | ActiveForward>(forwards, 22);
}

/**
 * How ssh reaches `vm`: its SSH forward (see `sshForward`), the `cloud_init` user, qvm's key
 * (made if missing) and the VM's known_hosts. A UsageError when there is no forward to port 22,
 * or when its port is `auto` and the VM is not running (no port picked). `warn` hears what was
 * repaired on the way (a key's mode, a lost .pub, a link in place of known_hosts).
 */
export async function sshTarget(
  dirs: Dirs,
  vm: VmRecord,
  options: { running: boolean; warn?: (message: string) => void },
): Promise<SshTarget> {
  const forward = sshForward(dirs, vm, options.running);
  if (!forward) throw noSshForward(vm);
  if (forward.host === "auto") {
    throw new UsageError(
      `VM '${vm.name}' is not running, and its SSH port is 'auto' (picked at start): start it first`,
    );
  }
  await ensureKey(dirs.dataDir, { warn: options.warn });
  const paths = cloudPaths(dirs, vm.id);
  ensurePrivateDir(paths.dir, { within: dirs.dataDir });
  // ssh appends new host keys to this file by its path: a link there must not lead elsewhere.
  clearForeignFile(paths.knownHosts, options.warn);
  return {
    user: seedUser(vm.config.cloud_init ?? {}, invokingUser()),
    port: forward.host,
    address: forward.address,
    key: keyPaths(dirs.dataDir).private,
    knownHosts: paths.knownHosts,
    alias: `qvm-${vm.id}`,
  };
}

/** The ssh argv for `vm` (running, with a forward to guest port 22). */
export async function sshCommand(
  dirs: Dirs,
  vm: VmRecord,
  options: SshArgvOptions & { warn?: (message: string) => void } = {},
): Promise<string[]> {
  return sshArgv(await sshTarget(dirs, vm, { running: true, warn: options.warn }), options);
}

/**
 * True when `vm` forwards a host port to guest port 22 but no SSH server answers there within
 * `timeoutMs`: the guest is still booting (or runs no sshd). For the hint after a failed `ssh`.
 */
export async function sshNotAnswering(dirs: Dirs, vm: VmRecord, timeoutMs = 3000) {
  const forward = forwardTo(activeForwards(dirs, vm.id) ?? [], 22);
  if (!forward) return false;
  const address = forward.address === "0.0.0.0" ? "127.0.0.1" : forward.address;
  return !await sshServerAnswers(address, forward.host, timeoutMs);
}

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
