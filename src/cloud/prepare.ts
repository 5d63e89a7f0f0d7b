/**
 * What `start` adds for a VM with `image:`, `network:`, `cloud_init:` or `guest_agent:`: the
 * port forwards (settled and recorded), the root overlay, the NoCloud seed and the guest agent
 * channel, as QEMU options; and the same options previewed for `start --dry-run`.
 */
import {
  escapeOptionValue,
  formatForward,
  isPublicKeyLine,
  pinnedImageFormat,
  type PortForward,
  type VmConfig,
} from "../config/mod.ts";
import { type Dirs, ensurePrivateDir, type StateStore } from "../state/mod.ts";
import { cloudPaths } from "../vm_files.ts";
import { ensureOverlay, overlayPath, rootDriveArgv } from "./image.ts";
import { portHolder } from "./paths.ts";
import {
  type ActiveForward,
  autoPortsOf,
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
  invokingUser,
  SEED_LABEL,
  seedDriveArgv,
  seedFiles,
  writeSeed,
} from "./seed.ts";
import { clearForeignFile, ensureKey, homeKeys } from "./ssh.ts";
import { agentEnabled } from "./status.ts";

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
