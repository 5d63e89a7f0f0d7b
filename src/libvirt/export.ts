/**
 * A qvm VM as a libvirt domain. Pure: the same VM gives the same XML. Every part of the config
 * that libvirt has an element for is written as that element; everything else goes, as QEMU
 * options, into `<qemu:commandline>` and is listed in `passedThrough`, so nothing is dropped.
 */
import {
  type ArgumentItem,
  argumentOption,
  diskFile,
  type DiskStorage,
  formatForward,
  type VirtfsStorage,
  type VmConfig,
} from "../config/mod.ts";
import { argumentArgv, isNographic, storageArgv } from "../qemu/argv.ts";
import { UsageError } from "../errors.ts";
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
/** Where libvirt keeps the serial console's log on any host it runs on. */
export const SERIAL_LOG_DIR = "/var/log/libvirt/qemu";

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
const BUSES = new Set(["virtio", "sata", "ide", "scsi"]);
const CACHE_MODES = new Set(["none", "writeback", "writethrough", "directsync", "unsafe"]);
const ACCESS_MODES: Record<string, string | undefined> = {
  passthrough: "passthrough",
  "mapped-xattr": "mapped",
  none: "squash",
};
const NETWORK_OPTIONS = new Set(["net", "netdev", "nic"]);
const ALIAS = /^[A-Za-z0-9_-]+$/;
/** The config keys the mapping reads; any other key is reported, never dropped in silence. */
const MAPPED_KEYS = new Set([
  "name",
  "binary",
  "memory",
  "cpu",
  "display",
  "vga",
  "arguments",
  "args",
  "storage",
  "network",
  "cloud_init",
  "guest_agent",
]);
const MAPPED_DISK_KEYS = new Set([
  "name",
  "type",
  "file",
  "size",
  "interface",
  "media",
  "backing_file",
  "backing_format",
  "options",
]);
const MAPPED_SHARE_KEYS = new Set([
  "name",
  "type",
  "path",
  "mount_tag",
  "security_model",
  "readonly",
  "options",
]);
/** Passed-through options that add PCI devices, which QEMU places in the first free slots. */
const PCI_OPTIONS = new Set(["-device", "-net", "-nic", "-netdev", "-virtfs", "-drive"]);
/** The first PCI slot given to libvirt's devices when passed-through options add PCI devices. */
const HIGH_SLOT = 0x10;

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

/** Raw argv in option-sized groups (`-rtc base=utc -no-hpet` → `[-rtc, base=utc]`, `[-no-hpet]`). */
export function optionGroups(argv: readonly string[]): string[][] {
  const groups: string[][] = [];
  for (const arg of argv) {
    const last = groups.at(-1);
    if (
      last !== undefined && last.length === 1 && last[0].startsWith("-") && !arg.startsWith("-")
    ) {
      last.push(arg);
    } else groups.push([arg]);
  }
  return groups;
}

/** `192M` → `<memory unit="MiB">192</memory>`: the unit as written, so it reads back the same. */
function memoryElement(memory: string): XmlElement {
  const match = /^(\d+)([KMGT])$/.exec(memory);
  if (!match) return el("memory", { unit: "MiB" }, [memory]);
  return el("memory", { unit: MEMORY_UNITS[match[2]] }, [match[1]]);
}

/** The plain text value of an `arguments` item like `{kernel: "/boot/vmlinuz"}`, else undefined. */
function plainValue(item: ArgumentItem): string | undefined {
  if (typeof item === "string") return undefined;
  const keys = Object.keys(item);
  if (keys.length !== 1) return undefined;
  const value = item[keys[0]];
  return typeof value === "string" ? value : undefined;
}

/** The value of a one-key item as text when it is a string or a number (`{m: 512}` → `512`). */
function scalarOf(item: ArgumentItem): string | undefined {
  if (typeof item === "string") return undefined;
  const keys = Object.keys(item);
  const value = keys.length === 1 ? item[keys[0]] : undefined;
  return typeof value === "string" || typeof value === "number" ? String(value) : undefined;
}

/** The machine type of a `machine` item written `q35` or `{type: q35}`, else undefined. */
function machineType(item: ArgumentItem): string | undefined {
  const text = plainValue(item);
  if (text !== undefined) return /^[A-Za-z0-9._-]+$/.test(text) ? text : undefined;
  if (typeof item === "string") return undefined;
  const value = item[Object.keys(item)[0]];
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const keys = Object.keys(value);
  return keys.length === 1 && keys[0] === "type" && typeof value.type === "string"
    ? value.type
    : undefined;
}

/** What the `arguments` list says that libvirt has elements for, and the rest as QEMU options. */
interface ArgumentPlan {
  type?: "kvm" | "qemu";
  memory?: string;
  vcpus?: number;
  machine?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  acpi: boolean;
  ownSerial: boolean;
  network: boolean;
  passed: string[][];
}

function planArguments(items: readonly ArgumentItem[]): ArgumentPlan {
  const plan: ArgumentPlan = { acpi: true, ownSerial: false, network: false, passed: [] };
  for (const item of items) {
    const option = argumentOption(item);
    const value = plainValue(item);
    const bare = typeof item === "string";
    const count = scalarOf(item);
    if (option === "accel" && plan.type === undefined && (value === "tcg" || value === "kvm")) {
      plan.type = value === "tcg" ? "qemu" : "kvm";
    } else if (
      option === "m" && plan.memory === undefined && /^[1-9]\d*[KMGT]?$/i.test(count ?? "")
    ) {
      plan.memory = /^\d+$/.test(count!) ? `${count}M` : count!.toUpperCase();
    } else if (option === "smp" && plan.vcpus === undefined && /^[1-9]\d*$/.test(count ?? "")) {
      plan.vcpus = Number(count);
    } else if (option === "enable-kvm" && bare && plan.type === undefined) {
      plan.type = "kvm";
    } else if (option === "machine" && plan.machine === undefined && machineType(item)) {
      plan.machine = machineType(item);
    } else if (
      (option === "kernel" || option === "initrd" || option === "append") &&
      value !== undefined && plan[option] === undefined
    ) {
      plan[option] = value;
    } else if (option === "no-acpi" && bare) {
      plan.acpi = false;
    } else if (option === "nographic") {
      // Headless with the serial console on a pty: what a domain without <graphics> is.
    } else {
      if (option === "serial") plan.ownSerial = true;
      if (NETWORK_OPTIONS.has(option)) plan.network = true;
      plan.passed.push(argumentArgv(item));
    }
  }
  return plan;
}

/** `media: cdrom` (read without depending on the field's type, which older configs lack). */
function isCdrom(disk: DiskStorage): boolean {
  return (disk as { media?: string }).media === "cdrom";
}

/**
 * A disk libvirt can describe: a known bus (not virtio for a CD-ROM), and no `-drive` sub-options
 * other than `cache`.
 */
function mappableDisk(disk: DiskStorage): boolean {
  const options = Object.entries(disk.options ?? {});
  const media = (disk as { media?: string }).media;
  if (media !== undefined && media !== "cdrom") return false;
  if (isCdrom(disk) && disk.interface === "virtio") return false;
  return BUSES.has(disk.interface) &&
    options.every(([k, v]) => k === "cache" && CACHE_MODES.has(v));
}

/** A share libvirt can describe: a security model it knows and no extra sub-options. */
function mappableShare(share: VirtfsStorage): boolean {
  return ACCESS_MODES[share.security_model] !== undefined &&
    Object.keys(share.options ?? {}).length === 0 && ALIAS.test(share.name);
}

function targetDev(disk: DiskStorage, counters: Record<string, number>): string {
  const prefix = disk.interface === "virtio" ? "vd" : disk.interface === "ide" ? "hd" : "sd";
  const n = counters[prefix] = (counters[prefix] ?? -1) + 1;
  return prefix + (n < 26 ? "" : String.fromCharCode(97 + Math.floor(n / 26) - 1)) +
    String.fromCharCode(97 + (n % 26));
}

/**
 * Gives each PCI device libvirt will add an address from slot 0x10 up, so that the devices QEMU
 * adds for passed-through options (placed in the first free slots, after libvirt has chosen its
 * own) never collide with them.
 */
function placeHigh(devices: (XmlElement | undefined)[]): void {
  let slot = HIGH_SLOT;
  for (const device of devices) {
    if (device === undefined) continue;
    const pci = device.name === "filesystem" || device.name === "interface" ||
      device.name === "video" ||
      (device.name === "disk" &&
        device.children.some((c) =>
          typeof c !== "string" && c.name === "target" && c.attrs.bus === "virtio"
        )) ||
      (device.name === "controller" && ["scsi", "sata"].includes(device.attrs.type));
    if (!pci) continue;
    const address = `0x${(slot++).toString(16)}`;
    device.children.push(
      el("address", { type: "pci", domain: "0x0000", bus: "0x00", slot: address, function: "0x0" }),
    );
  }
}

function diskElement(disk: DiskStorage, file: string, dev: string): XmlElement {
  const backing = disk.backing_file !== undefined && disk.backing_format !== undefined
    ? el("backingStore", { type: "file" }, [
      el("format", { type: disk.backing_format }),
      el("source", { file: disk.backing_file }),
    ])
    : undefined;
  return el("disk", { type: "file", device: isCdrom(disk) ? "cdrom" : "disk" }, [
    el("driver", { name: "qemu", type: disk.type, cache: disk.options?.cache }),
    el("source", { file }),
    backing,
    el("target", { dev, bus: disk.interface }),
    isCdrom(disk) ? el("readonly") : undefined,
    ALIAS.test(disk.name) ? el("alias", { name: `ua-${disk.name}` }) : undefined,
  ]);
}

function shareElement(share: VirtfsStorage): XmlElement {
  return el("filesystem", { type: "mount", accessmode: ACCESS_MODES[share.security_model] }, [
    el("source", { dir: share.path }),
    el("target", { dir: share.mount_tag }),
    share.readonly ? el("readonly") : undefined,
    el("alias", { name: `ua-${share.name}` }),
  ]);
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
  const passed: string[][] = [];
  if (config.display !== undefined) passed.push(["-display", config.display]);
  if (config.vga !== undefined) passed.push(["-vga", config.vga]);
  passed.push(...plan.passed);
  const files: string[] = [];
  if (plan.kernel !== undefined) files.push(plan.kernel);
  if (plan.initrd !== undefined) files.push(plan.initrd);

  const devices: (XmlElement | undefined)[] = [];
  const binary = config.binary;
  const emulator = binary === undefined
    ? undefined
    : binary.startsWith("/")
    ? binary
    : options.emulator;
  if (emulator !== undefined) devices.push(el("emulator", {}, [emulator]));

  const counters: Record<string, number> = {};
  const rawStorage: VmConfig["storage"] = [];
  const explicit: VmConfig["storage"] = [];
  let scsi = false;
  let sata = false;
  for (const item of config.storage) {
    if (item.type === "virtfs") {
      files.push(item.path);
      explicit.push(item);
      if (mappableShare(item)) devices.push(shareElement(item));
      else rawStorage.push(item);
      continue;
    }
    const file = diskFile(item, options.diskDir);
    files.push(file);
    explicit.push({ ...item, file });
    if (mappableDisk(item)) {
      devices.push(diskElement(item, file, targetDev(item, counters)));
      scsi ||= item.interface === "scsi";
      sata ||= item.interface === "sata";
    } else {
      rawStorage.push({ ...item, file });
    }
  }
  // One call, so that controllers shared by several disks are added once.
  if (rawStorage.length > 0) passed.push(storageArgv(rawStorage, options.diskDir));
  if (scsi) devices.push(el("controller", { type: "scsi", index: 0, model: "virtio-scsi" }));
  passed.push(...optionGroups(config.args.filter((a) => !(a.startsWith("-") && isNographic(a)))));
  // -smp text (sockets, cores, threads): <vcpu> holds its count, QEMU gets the rest as written.
  if (typeof config.cpu === "string") passed.push(["-smp", config.cpu]);
  const cloudArgv = options.cloud?.argv ?? [];
  if (cloudArgv.length > 0) passed.push(...optionGroups(cloudArgv));
  files.push(...options.cloud?.files ?? []);
  if (config.guest_agent ?? config.cloud_init !== undefined) {
    // qvm's guest agent channel; libvirt makes the socket and `virsh qemu-agent-command` uses it.
    devices.push(
      el("channel", { type: "unix" }, [
        el("source", { mode: "bind" }),
        el("target", { type: "virtio", name: "org.qemu.guest_agent.0" }),
      ]),
    );
  }

  const rawArgs = config.args.some((a) => /^-+(net|netdev|nic)$/.test(a));
  if (!plan.network && !rawArgs && config.network === undefined) {
    const model = plan.machine?.includes("q35") ? "e1000e" : "e1000";
    devices.push(el("interface", { type: "user" }, [el("model", { type: model })]));
  }
  if (!plan.ownSerial) {
    devices.push(
      el("serial", { type: "pty" }, [
        el("log", { file: `${SERIAL_LOG_DIR}/${vm.name}-serial0.log`, append: "on" }),
        el("target", { port: 0 }),
      ]),
      el("console", { type: "pty" }, [el("target", { type: "serial", port: 0 })]),
    );
  }
  if (config.vga === undefined) devices.push(el("video", {}, [el("model", { type: "vga" })]));
  // QEMU's own machine has neither a USB controller nor a memory balloon unless asked.
  devices.push(
    el("controller", { type: "usb", model: "none" }),
    el("memballoon", { model: "none" }),
  );
  if (passed.some((group) => PCI_OPTIONS.has(group[0]))) {
    if (sata) devices.push(el("controller", { type: "sata", index: 0 }));
    placeHigh(devices);
  }

  const qvmConfig: Record<string, unknown> = { ...config, name: vm.name, storage: explicit };
  // Port forwards as written in a config, so that the kept config validates again.
  if (config.network) qvmConfig.network = { ports: config.network.ports.map(formatForward) };
  const root = el("domain", { type: plan.type ?? "kvm", "xmlns:qemu": QEMU_NS }, [
    el("name", {}, [vm.name]),
    el("uuid", {}, [vm.id]),
    el("metadata", {}, [
      el("qvm:config", { "xmlns:qvm": QVM_NS }, [JSON.stringify(qvmConfig)]),
      cloudArgv.length === 0
        ? undefined
        : el("qvm:runtime", { "xmlns:qvm": QVM_RUNTIME_NS }, [JSON.stringify(cloudArgv)]),
    ]),
    memoryElement(config.memory ?? plan.memory ?? DEFAULT_MEMORY),
    el("vcpu", {}, [String(cpuCount(config.cpu) ?? plan.vcpus ?? 1)]),
    el("os", {}, [
      el("type", { arch: archOf(binary), machine: plan.machine }, ["hvm"]),
      plan.kernel === undefined ? undefined : el("kernel", {}, [plan.kernel]),
      plan.initrd === undefined ? undefined : el("initrd", {}, [plan.initrd]),
      plan.append === undefined ? undefined : el("cmdline", {}, [plan.append]),
    ]),
    plan.acpi ? el("features", {}, [el("acpi")]) : undefined,
    el("devices", {}, devices),
    passed.length === 0
      ? undefined
      : el("qemu:commandline", {}, passed.flat().map((value) => el("qemu:arg", { value }))),
  ]);
  const unknownKeys = Object.keys(config).filter((k) => !MAPPED_KEYS.has(k));
  for (const item of config.storage) {
    const known = item.type === "virtfs" ? MAPPED_SHARE_KEYS : MAPPED_DISK_KEYS;
    for (const key of Object.keys(item)) {
      if (!known.has(key)) unknownKeys.push(`storage '${item.name}': ${key}`);
    }
  }
  let xml: string;
  try {
    xml = writeXml(root);
  } catch (err) {
    if (!(err instanceof XmlCharError)) throw err;
    throw new UsageError(
      `cannot write '${vm.name}' as libvirt XML: ${err.message}; remove it from the config`,
    );
  }
  return {
    xml,
    passedThrough: passed.map((p) => p.join(" ")),
    files,
    unknownKeys,
  };
}
