/**
 * How ssh reaches a cloud VM: the forward to guest port 22, the user, qvm's key and the VM's
 * known_hosts, as the ssh argv; and whether an SSH server answers there yet.
 */
import type { PortForward } from "../config/mod.ts";
import { UsageError } from "../errors.ts";
import { type Dirs, ensurePrivateDir, type VmRecord } from "../state/mod.ts";
import { optionForwards } from "../qemu/reach.ts";
import { cloudPaths } from "../vm_files.ts";
import { type ActiveForward, forwardTo } from "./ports.ts";
import { invokingUser, seedUser } from "./seed.ts";
import {
  clearForeignFile,
  ensureKey,
  keyPaths,
  sshArgv,
  type SshArgvOptions,
  sshServerAnswers,
  type SshTarget,
} from "./ssh.ts";
import { activeForwards } from "./status.ts";

/** Why a VM cannot be reached over SSH: no forward to guest port 22. */
export function noSshForward(vm: VmRecord): UsageError {
  return new UsageError(
    `VM '${vm.name}' forwards no host port to guest port 22: add network: {ports: ["auto:22"]}`,
  );
}

/**
 * The forwards of `vm` as `qvm ports` shows them: those in effect while the VM runs (`auto`
 * ports picked), else as configured (`auto` then stays `auto`); then those written as
 * `hostfwd=` in the config's own QEMU options.
 */
export function vmForwards(
  dirs: Dirs,
  vm: VmRecord,
  running: boolean,
): (PortForward | ActiveForward)[] {
  return [
    ...(running ? activeForwards(dirs, vm.id) : undefined) ?? vm.config.network?.ports ?? [],
    ...optionForwards(vm.config),
  ];
}

/** The forward to guest port 22 as `qvm ports` shows it (see `vmForwards`). */
export function sshForward(
  dirs: Dirs,
  vm: VmRecord,
  running: boolean,
): PortForward | ActiveForward | undefined {
  return forwardTo<PortForward | ActiveForward>(vmForwards(dirs, vm, running), 22);
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
