/**
 * A qvm VM as a libvirt domain. Pure: the same VM gives the same XML. Every part of the config
 * that libvirt has an element for is written as that element; everything else goes, as QEMU
 * options, into `<qemu:commandline>` and is listed in `passedThrough`, so nothing is dropped.
 */
import {
  CONFIG_KEYS,
  type ConfigKey,
  DISK_ITEM_KEYS,
  formatForward,
  VIRTFS_ITEM_KEYS,
  type VmConfig,
} from "../config/mod.ts";
import { isNographic, storageArgv } from "../qemu/argv.ts";
import { UsageError } from "../errors.ts";
import { type ArgumentPlan, optionGroups, planArguments } from "./_export_args.ts";
import { baseDevices, clearPciSlots, planStorage } from "./_export_devices.ts";
import { el, writeXml, XmlCharError, type XmlElement } from "./xml.ts";

/** The namespace of `<qemu:commandline>`. */
export const QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0";
/** The namespace of qvm's own element in `<metadata>`: the config the domain was made from. */
export const QVM_NS = "urn:qvm:libvirt:1";
/**
 * The namespace of the options qvm adds at start for the cloud sections, kept beside the config:
 * libvirt keeps one `<metadata>` element per namespace, so each needs its own.
 */
export const QVM_RUNTIME_NS = "urn:qvm:libvirt:runtime:1";
/** QEMU's memory when a config sets none (libvirt needs a value). */
export const DEFAULT_MEMORY = "128M";

/** What `domainXml` made. */
export interface DomainExport {
  /** The domain XML document. */
  xml: string;
  /** The QEMU options (as one line each) that went into `<qemu:commandline>`. */
  passedThrough: string[];
  /** Host files the domain needs at the same paths where it runs: disks, kernel, initrd, shares. */
  files: string[];
  /** Config keys this version of the mapping does not know (kept in `<metadata>` only). */
  unknownKeys: string[];
}

/** What `domainXml` needs: the VM and where its disks live. */
export interface DomainSource {
  id: string;
  name: string;
  config: VmConfig;
}

/** Options of `domainXml`. */
export interface DomainOptions {
  /** Folder of disks that have no `file` (the VM's disk dir). */
  diskDir: string;
  /** Absolute path of the config's `binary` when it is a bare name (libvirt needs a path). */
  emulator?: string;
  /**
   * The QEMU options qvm adds at start for `network:` and `cloud_init:` (the NIC with its port
   * forwards, the seed drive), and the files they need; passed through like the rest.
   */
  cloud?: { argv: string[]; files: string[] };
}

const MEMORY_UNITS: Record<string, string> = { K: "KiB", M: "MiB", G: "GiB", T: "TiB" };
/**
 * For each config key, whether the mapping carries it into the domain's XML (true) or keeps it in
 * `<metadata>` only (false: reported in `unknownKeys`, never dropped in silence). Typed by
 * config's own key list, so a key added there must be decided here.
 */
const MAPPED: Record<ConfigKey, boolean> = {
  name: true,
  binary: true,
  memory: true,
  cpu: true,
  display: true,
  vga: true,
  args: true,
  arguments: true,
  storage: true,
  image: false,
  image_format: false,
  disk_size: false,
  allowed_backing_files: false,
  network: true,
  cloud_init: true,
  guest_agent: true,
};
const MAPPED_KEYS: ReadonlySet<string> = new Set(
  CONFIG_KEYS.filter((key) => MAPPED[key]),
);
/** Every key of a disk or share item is carried, its `options:` too. */
const MAPPED_DISK_KEYS: ReadonlySet<string> = new Set([...DISK_ITEM_KEYS, "options"]);
const MAPPED_SHARE_KEYS: ReadonlySet<string> = new Set([...VIRTFS_ITEM_KEYS, "options"]);

/** The architecture a QEMU binary emulates (`qemu-system-aarch64` → `aarch64`); x86_64 otherwise. */
export function archOf(binary: string | undefined): string {
  const match = /qemu-system-([A-Za-z0-9_]+)$/.exec(binary ?? "");
  return match ? match[1] : "x86_64";
}

/** The CPU count of `cpu:` (a number, or `-smp` text: its leading count, or `cpus=`). */
function cpuCount(cpu: VmConfig["cpu"]): number | undefined {
  if (typeof cpu !== "string") return cpu;
  const count = /^(\d+)(,|$)/.exec(cpu)?.[1] ?? /(^|,)cpus=(\d+)/.exec(cpu)?.[2];
  return count === undefined ? undefined : Number(count);
}

/** `192M` → `<memory unit="MiB">192</memory>`: the unit as written, so it reads back the same. */
function memoryElement(memory: string): XmlElement {
  const match = /^(\d+)([KMGT])$/.exec(memory);
  if (!match) return el("memory", { unit: "MiB" }, [memory]);
  return el("memory", { unit: MEMORY_UNITS[match[2]] }, [match[1]]);
}

/**
 * The QEMU options of `<qemu:commandline>`, in order: display, vga, the `arguments` libvirt has
 * no element for, the storage it cannot describe, raw `args` (without `-nographic`), `cpu:` given
 * as `-smp` text, and the options qvm adds at start for the cloud sections.
 */
function passedOptions(
  config: VmConfig,
  parts: { plan: ArgumentPlan; raw: VmConfig["storage"]; options: DomainOptions },
): string[][] {
  const passed: string[][] = [];
  if (config.display !== undefined) passed.push(["-display", config.display]);
  if (config.vga !== undefined) passed.push(["-vga", config.vga]);
  passed.push(...parts.plan.passed);
  // One call, so that controllers shared by several disks are added once.
  if (parts.raw.length > 0) passed.push(storageArgv(parts.raw, parts.options.diskDir));
  passed.push(...optionGroups(config.args.filter((a) => !(a.startsWith("-") && isNographic(a)))));
  // -smp text (sockets, cores, threads): <vcpu> holds its count, QEMU gets the rest as written.
  if (typeof config.cpu === "string") passed.push(["-smp", config.cpu]);
  const cloudArgv = parts.options.cloud?.argv ?? [];
  if (cloudArgv.length > 0) passed.push(...optionGroups(cloudArgv));
  return passed;
}

/**
 * `<metadata>`: the config itself (with the name, every disk's file, and port forwards as a
 * config writes them, so that it validates again), and the options qvm adds at start.
 */
function metadataElement(
  vm: DomainSource,
  parts: { explicit: VmConfig["storage"]; cloudArgv: string[] },
): XmlElement {
  const { explicit, cloudArgv } = parts;
  const { config } = vm;
  const qvmConfig: Record<string, unknown> = { ...config, name: vm.name, storage: explicit };
  if (config.network) qvmConfig.network = { ports: config.network.ports.map(formatForward) };
  return el("metadata", {}, [
    el("qvm:config", { "xmlns:qvm": QVM_NS }, [JSON.stringify(qvmConfig)]),
    cloudArgv.length === 0
      ? undefined
      : el("qvm:runtime", { "xmlns:qvm": QVM_RUNTIME_NS }, [JSON.stringify(cloudArgv)]),
  ]);
}

/** `<os>`: the architecture and machine, and a direct kernel boot's kernel, initrd and cmdline. */
function osElement(binary: string | undefined, plan: ArgumentPlan): XmlElement {
  return el("os", {}, [
    el("type", { arch: archOf(binary), machine: plan.machine }, ["hvm"]),
    plan.kernel === undefined ? undefined : el("kernel", {}, [plan.kernel]),
    plan.initrd === undefined ? undefined : el("initrd", {}, [plan.initrd]),
    plan.append === undefined ? undefined : el("cmdline", {}, [plan.append]),
  ]);
}

/** The config keys (and storage items' keys) the mapping does not know, as `unknownKeys` lists them. */
function unknownKeysOf(config: VmConfig): string[] {
  const unknownKeys = Object.keys(config).filter((k) => !MAPPED_KEYS.has(k));
  for (const item of config.storage) {
    const known = item.type === "virtfs" ? MAPPED_SHARE_KEYS : MAPPED_DISK_KEYS;
    for (const key of Object.keys(item)) {
      if (!known.has(key)) unknownKeys.push(`storage '${item.name}': ${key}`);
    }
  }
  return unknownKeys;
}

/** `root` as XML text; a character XML 1.0 cannot carry is a UsageError naming the VM. */
function writeDomain(root: XmlElement, name: string): string {
  try {
    return writeXml(root);
  } catch (err) {
    if (!(err instanceof XmlCharError)) throw err;
    throw new UsageError(
      `cannot write '${name}' as libvirt XML: ${err.message}; remove it from the config`,
    );
  }
}

/**
 * The domain XML for a VM: name, uuid (the VM's id), memory, vCPUs, machine, direct kernel boot,
 * disks, 9p shares, serial console on a pty logged under `/var/log/libvirt/qemu`, ACPI, QEMU's
 * default NIC (user networking) and VGA unless the config sets its own, `type='qemu'` for TCG and
 * `kvm` otherwise. The rest is passed through in `<qemu:commandline>`; the config itself is kept
 * in `<metadata>` so that `import-libvirt` can give back its exact spelling. A value holding a
 * character XML 1.0 cannot carry (a control character in the kernel command line) is a UsageError.
 */
export function domainXml(vm: DomainSource, options: DomainOptions): DomainExport {
  const { config } = vm;
  const plan = planArguments(config.arguments);
  const storage = planStorage(config.storage, options.diskDir);
  const passed = passedOptions(config, { plan, raw: storage.raw, options });
  const files: string[] = [];
  if (plan.kernel !== undefined) files.push(plan.kernel);
  if (plan.initrd !== undefined) files.push(plan.initrd);
  files.push(...storage.files, ...options.cloud?.files ?? []);

  const binary = config.binary;
  const emulator = binary === undefined
    ? undefined
    : binary.startsWith("/")
    ? binary
    : options.emulator;
  const devices = [
    ...emulator === undefined ? [] : [el("emulator", {}, [emulator])],
    ...storage.devices,
    ...baseDevices(vm, plan),
  ];
  clearPciSlots(devices, { passed, sata: storage.sata });

  const root = el("domain", { type: plan.type ?? "kvm", "xmlns:qemu": QEMU_NS }, [
    el("name", {}, [vm.name]),
    el("uuid", {}, [vm.id]),
    metadataElement(vm, { explicit: storage.explicit, cloudArgv: options.cloud?.argv ?? [] }),
    memoryElement(config.memory ?? plan.memory ?? DEFAULT_MEMORY),
    el("vcpu", {}, [String(cpuCount(config.cpu) ?? plan.vcpus ?? 1)]),
    osElement(binary, plan),
    plan.acpi ? el("features", {}, [el("acpi")]) : undefined,
    el("devices", {}, devices),
    passed.length === 0
      ? undefined
      : el("qemu:commandline", {}, passed.flat().map((value) => el("qemu:arg", { value }))),
  ]);
  return {
    xml: writeDomain(root, vm.name),
    passedThrough: passed.map((p) => p.join(" ")),
    files,
    unknownKeys: unknownKeysOf(config),
  };
}
