/**
 * A libvirt domain as a qvm config: the reverse of `export.ts` for what qvm maps (memory, vCPUs,
 * accelerator, machine, kernel boot, file disks, 9p shares, `<qemu:commandline>`). Pure. What the
 * domain has that qvm cannot carry is listed in `notImported`, never dropped in silence.
 */
import { UsageError } from "../errors.ts";
import { isPublicKeyLine, stripDashes, validateConfig, type VmConfig } from "../config/mod.ts";
import { domainXml, QEMU_NS, QVM_NS, QVM_RUNTIME_NS } from "./export.ts";
import { child, childElements, parseXml, textOf, type XmlElement, XmlSyntaxError } from "./xml.ts";

/** What a domain XML gives qvm. */
export interface ImportedDomain {
  /** The domain's `<name>`. */
  name: string;
  /** The domain's `<uuid>`, when it has one. */
  uuid?: string;
  /** A raw config for `validateConfig` (no `name`). */
  config: Record<string, unknown>;
  /** One line per part of the domain qvm did not import. */
  notImported: string[];
  /**
   * True when the config is the one qvm kept in `<metadata>` (the XML says exactly what qvm
   * wrote from it): it is used as is, so the QEMU command line is the original's.
   */
  exact: boolean;
}

const MEMORY_UNITS: Record<string, [number, string]> = {
  b: [1, "B"],
  bytes: [1, "B"],
  KB: [1000, "B"],
  k: [1, "K"],
  KiB: [1, "K"],
  MB: [1000 ** 2, "B"],
  M: [1, "M"],
  MiB: [1, "M"],
  GB: [1000 ** 3, "B"],
  G: [1, "G"],
  GiB: [1, "G"],
  TB: [1000 ** 4, "B"],
  T: [1, "T"],
  TiB: [1, "T"],
};
const ACCESS_MODES: Record<string, string> = {
  passthrough: "passthrough",
  mapped: "mapped-xattr",
  squash: "none",
};
const STORAGE_NAME = /^[A-Za-z][A-Za-z0-9._-]{0,62}$/;
/** Devices QEMU or libvirt add by themselves; qvm's QEMU has them without being told. */
const IMPLIED_DEVICES = new Set(["emulator", "controller", "input", "memballoon", "audio"]);
const IMPLIED_TOP = new Set([
  "name",
  "uuid",
  "metadata",
  "title",
  "description",
  "memory",
  "currentMemory",
  "vcpu",
  "os",
  "features",
  "devices",
  "clock",
  "pm",
  "resource",
  "seclabel",
  "on_poweroff",
  "on_crash",
  "on_reboot",
  "cpu",
]);
const DEFAULT_FEATURES = new Set(["acpi", "apic", "pae"]);
/** What a disk's `<driver>` and children may say that qvm carries (or that is only placement). */
const DISK_DRIVER_ATTRS = new Set(["name", "type", "cache"]);
const DISK_PARTS = new Set([
  "driver",
  "source",
  "target",
  "readonly",
  "alias",
  "backingStore",
  "address",
]);

function memoryOf(node: XmlElement | undefined, notes: string[]): string | undefined {
  const text = textOf(node);
  if (node === undefined || text === undefined || !/^\d+$/.test(text)) {
    if (node !== undefined) notes.push(`<memory> '${text}' is not a number`);
    return undefined;
  }
  const unit = MEMORY_UNITS[node.attrs.unit ?? "KiB"];
  if (unit === undefined) {
    notes.push(`<memory> unit '${node.attrs.unit}' is not known`);
    return undefined;
  }
  if (unit[1] !== "B" && unit[1] !== "K") return `${BigInt(text)}${unit[1]}`;
  const kib = unit[1] === "K" ? BigInt(text) : (BigInt(text) * BigInt(unit[0]) + 1023n) / 1024n;
  return largestUnit(kib);
}

/** KiB in the largest unit that divides them (`196608` → `192M`), as libvirt's own XML says KiB. */
function largestUnit(kib: bigint): string {
  for (const [unit, size] of [["T", 1024n ** 3n], ["G", 1024n ** 2n], ["M", 1024n]] as const) {
    if (kib > 0n && kib % size === 0n) return `${kib / size}${unit}`;
  }
  return `${kib}K`;
}

/** A memory size in KiB (`2G` → 2097152), to compare sizes written in different units. */
function kibOf(size: unknown): string | undefined {
  const match = typeof size === "string" ? /^(\d+)([KMGT])$/.exec(size) : null;
  if (!match) return undefined;
  return String(BigInt(match[1]) * 1024n ** BigInt("KMGT".indexOf(match[2])));
}

/**
 * A reading of a domain in the form libvirt's own XML (`virsh dumpxml`) and qvm's export agree on:
 * memory in KiB, the machine alias for its versioned name (`pc-q35-7.2` is `q35`), QEMU's
 * defaults (machine `pc`, the host's `/usr/bin/qemu-system-<arch>`) left out.
 */
function comparable(read: ImportedDomain): string {
  const config = { ...read.config };
  config.memory = kibOf(config.memory) ?? config.memory;
  if (typeof config.binary === "string" && /^\/usr\/bin\/qemu-system-x86_64$/.test(config.binary)) {
    delete config.binary;
  }
  config.arguments = (config.arguments as unknown[]).flatMap((item) => {
    const machine = (item as { machine?: unknown }).machine;
    if (typeof machine !== "string") return [item];
    const alias = machine.replace(/^pc-i440fx-[\d.]+$/, "pc").replace(/^pc-q35-[\d.]+$/, "q35");
    return alias === "pc" ? [] : [{ machine: alias }];
  });
  return JSON.stringify({ config, notes: read.notImported });
}

/** `<qemu:arg>` values as `arguments` items (`-netdev user,id=n0` → `{netdev: "user,id=n0"}`). */
interface Commandline {
  items: unknown[];
  display?: string;
  vga?: string;
  /** A value with no option before it: the items cannot say it. */
  stray: boolean;
}

function commandlineItems(values: string[]): Commandline {
  const out: Commandline = { items: [], stray: false };
  for (let i = 0; i < values.length; i++) {
    const option = stripDashes(values[i]);
    const next = values[i + 1];
    const hasValue = next !== undefined && !next.startsWith("-");
    if (!values[i].startsWith("-") || option === "") {
      out.stray = true;
      continue;
    }
    if (hasValue && (option === "display" || option === "vga") && out[option] === undefined) {
      out[option] = next;
    } else {
      out.items.push(hasValue ? { [option]: next } : option);
    }
    if (hasValue) i++;
  }
  return out;
}

function qemuPrefix(root: XmlElement): string | undefined {
  for (const [key, value] of Object.entries(root.attrs)) {
    if (key.startsWith("xmlns:") && value === QEMU_NS) return key.slice(6);
  }
  return undefined;
}

function diskOf(disk: XmlElement, taken: Set<string>, notes: string[]): unknown {
  const target = child(disk, "target");
  const dev = target?.attrs.dev ?? "?";
  const device = disk.attrs.device ?? "disk";
  const driver = child(disk, "driver");
  // libvirt takes an image without a format as raw; a CD-ROM's image is always one.
  const format = driver?.attrs.type ?? (device === "cdrom" ? "raw" : undefined);
  const file = child(disk, "source")?.attrs.file;
  const bus = target?.attrs.bus ?? "virtio";
  const cdrom = device === "cdrom";
  const why = device !== "disk" && !cdrom
    ? `device '${device}'`
    : (disk.attrs.type ?? "file") !== "file" || file === undefined
    ? `type '${disk.attrs.type}' (qvm takes file disks)`
    : format !== "qcow2" && format !== "raw"
    ? `format '${format}' (qvm takes qcow2 and raw)`
    : !["virtio", "sata", "ide", "scsi"].includes(bus) || (cdrom && bus === "virtio")
    ? `bus '${bus}'${cdrom ? " for a cdrom" : ""}`
    : undefined;
  if (why !== undefined) {
    notes.push(`disk ${dev}: ${why}`);
    return undefined;
  }
  const alias = child(disk, "alias")?.attrs.name?.replace(/^ua-/, "");
  let name = alias !== undefined && STORAGE_NAME.test(alias) ? alias : dev;
  if (!STORAGE_NAME.test(name) || taken.has(name)) name = `disk${taken.size}`;
  taken.add(name);
  const item: Record<string, unknown> = { name, type: format, file, interface: bus };
  // A CD-ROM is read-only by nature: its <readonly/> is not an option of its own.
  if (cdrom) item.media = "cdrom";
  const options: Record<string, string> = {};
  if (driver?.attrs.cache !== undefined) options.cache = driver.attrs.cache;
  if (child(disk, "readonly") && !cdrom) options.readonly = "on";
  if (Object.keys(options).length > 0) item.options = options;
  for (const key of Object.keys(driver?.attrs ?? {})) {
    if (!DISK_DRIVER_ATTRS.has(key)) {
      notes.push(`disk ${dev}: driver ${key}='${driver!.attrs[key]}'`);
    }
  }
  for (const node of childElements(disk)) {
    if (!DISK_PARTS.has(node.name)) notes.push(`disk ${dev}: <${node.name}>`);
  }
  const backing = child(disk, "backingStore");
  const backingFile = child(backing, "source")?.attrs.file;
  if (backingFile !== undefined) {
    item.backing_file = backingFile;
    const backingFormat = child(backing, "format")?.attrs.type;
    if (backingFormat !== undefined) item.backing_format = backingFormat;
  }
  return item;
}

function shareOf(fs: XmlElement, taken: Set<string>, notes: string[]): unknown {
  const path = child(fs, "source")?.attrs.dir;
  const tag = child(fs, "target")?.attrs.dir;
  const model = ACCESS_MODES[fs.attrs.accessmode ?? "passthrough"];
  const driver = child(fs, "driver")?.attrs.type ?? "path";
  if ((fs.attrs.type ?? "mount") !== "mount" || path === undefined || tag === undefined) {
    notes.push(`filesystem ${tag ?? path ?? "?"}: type '${fs.attrs.type}' (qvm takes 9p mounts)`);
    return undefined;
  }
  if (model === undefined || driver !== "path") {
    notes.push(`filesystem ${tag}: accessmode '${fs.attrs.accessmode}', driver '${driver}'`);
    return undefined;
  }
  const alias = child(fs, "alias")?.attrs.name?.replace(/^ua-/, "");
  let name = alias !== undefined && STORAGE_NAME.test(alias) ? alias : `fs${taken.size}`;
  if (taken.has(name)) name = `fs${taken.size}`;
  taken.add(name);
  return {
    name,
    type: "virtfs",
    path,
    mount_tag: tag,
    security_model: model,
    readonly: child(fs, "readonly") !== undefined,
  };
}

/** True for the NIC every qvm VM has unless told otherwise: user networking, default model. */
function defaultNic(nic: XmlElement): boolean {
  const model = child(nic, "model")?.attrs.type ?? "e1000";
  return nic.attrs.type === "user" && (model === "e1000" || model === "e1000e") &&
    childElements(nic).every((c) => ["model", "mac", "address", "alias"].includes(c.name));
}

function devicesOf(
  devices: XmlElement | undefined,
  notes: string[],
): { storage: unknown[]; agent: boolean } {
  const storage: unknown[] = [];
  let agent = false;
  const taken = new Set<string>();
  for (const device of childElements(devices)) {
    const kind = device.name;
    if (IMPLIED_DEVICES.has(kind)) continue;
    if (kind === "disk") {
      const item = diskOf(device, taken, notes);
      if (item !== undefined) storage.push(item);
    } else if (kind === "filesystem") {
      const item = shareOf(device, taken, notes);
      if (item !== undefined) storage.push(item);
    } else if (kind === "serial" || kind === "console") {
      if (device.attrs.type !== "pty") {
        notes.push(
          `${kind} of type '${device.attrs.type}' (qvm keeps the serial on 'qvm console')`,
        );
      }
    } else if (kind === "interface") {
      if (!defaultNic(device)) notes.push(`interface of type '${device.attrs.type}'`);
    } else if (kind === "channel") {
      const target = child(device, "target");
      if (target?.attrs.type === "virtio" && target.attrs.name === "org.qemu.guest_agent.0") {
        agent = true;
      } else notes.push(`channel ${target?.attrs.name ?? device.attrs.type}`);
    } else if (kind === "video") {
      const model = child(device, "model")?.attrs.type;
      if (model !== "vga") notes.push(`video model '${model}'`);
    } else {
      notes.push(`device <${kind}>${device.attrs.type ? ` of type '${device.attrs.type}'` : ""}`);
    }
  }
  return { storage, agent };
}

/** The qvm config of a domain, by reading its elements alone. */
function readDomain(root: XmlElement): ImportedDomain {
  const notes: string[] = [];
  const name = textOf(child(root, "name")) ?? "";
  const uuid = textOf(child(root, "uuid"));
  const config: Record<string, unknown> = {};
  const args: unknown[] = [];
  const type = root.attrs.type;
  if (type === "qemu") args.push({ accel: "tcg" });
  else if (type === "kvm") args.push({ accel: "kvm" });
  else throw new UsageError(`domain type '${type}' is not a QEMU domain (expected kvm or qemu)`);

  const memory = memoryOf(child(root, "memory"), notes);
  if (memory !== undefined) config.memory = memory;
  const current = child(root, "currentMemory");
  if (current !== undefined && memoryOf(current, []) !== memory) {
    notes.push(`<currentMemory> (the balloon target; qvm starts with all of <memory>)`);
  }
  const vcpu = textOf(child(root, "vcpu"));
  if (vcpu !== undefined) {
    // One vCPU is QEMU's default: said by leaving `cpu` unset, as qvm's configs mostly do.
    if (!/^\d+$/.test(vcpu)) notes.push(`<vcpu> '${vcpu}'`);
    else if (Number(vcpu) !== 1) config.cpu = Number(vcpu);
    const current = child(root, "vcpu")!.attrs.current;
    if (current !== undefined && current !== vcpu) notes.push(`<vcpu current='${current}'>`);
  }
  const os = child(root, "os");
  const osType = child(os, "type");
  const devices = child(root, "devices");
  const emulator = textOf(child(devices, "emulator"));
  const arch = osType?.attrs.arch ?? "x86_64";
  if (emulator !== undefined) config.binary = emulator;
  else if (arch !== "x86_64") config.binary = `qemu-system-${arch}`;
  if (osType?.attrs.machine !== undefined) args.push({ machine: osType.attrs.machine });
  for (const [tag, option] of [["kernel", "kernel"], ["initrd", "initrd"], ["cmdline", "append"]]) {
    const value = textOf(child(os, tag));
    if (value !== undefined && value !== "") args.push({ [option]: value });
  }
  for (const node of childElements(os)) {
    if (!["type", "kernel", "initrd", "cmdline", "boot"].includes(node.name)) {
      notes.push(`<os><${node.name}>`);
    } else if (node.name === "boot" && node.attrs.dev !== "hd") {
      // Boot from the disks is what libvirt writes by default and QEMU does first.
      notes.push(`<os><boot dev='${node.attrs.dev}'>`);
    }
  }
  // `<cpu>` as libvirt writes it for a domain without one is QEMU's default CPU; any other is not.
  // A running domain's (check='full') also lists the features QEMU's model has on this host.
  const expanded = (cpu: XmlElement, node: XmlElement): boolean =>
    cpu.attrs.check === "full" && node.name === "feature" && node.attrs.policy === "require";
  const cpu = child(root, "cpu");
  const cpuModel = textOf(child(cpu, "model"));
  if (
    cpu !== undefined &&
    ((cpu.attrs.mode ?? "custom") !== "custom" || ![undefined, "", "qemu64"].includes(cpuModel) ||
      childElements(cpu).some((c) => c.name !== "model" && !expanded(cpu, c)))
  ) {
    notes.push(
      `<cpu>${cpu.attrs.mode ? ` mode '${cpu.attrs.mode}'` : ""}` +
        (cpuModel ? ` model '${cpuModel}'` : ""),
    );
  }
  const features = child(root, "features");
  if (child(features, "acpi") === undefined) args.push("no-acpi");
  for (const feature of childElements(features)) {
    if (!DEFAULT_FEATURES.has(feature.name)) notes.push(`feature <${feature.name}>`);
  }
  for (const [tag, usual] of [["on_poweroff", "destroy"], ["on_crash", "destroy"]]) {
    const value = textOf(child(root, tag));
    if (value !== undefined && value !== usual) notes.push(`<${tag}>${value}`);
  }

  const { storage, agent } = devicesOf(devices, notes);
  if (agent) config.guest_agent = true;
  const prefix = qemuPrefix(root);
  const values: string[] = [];
  for (const node of childElements(root)) {
    if (prefix !== undefined && node.name === `${prefix}:commandline`) {
      for (const arg of childElements(node, `${prefix}:arg`)) values.push(arg.attrs.value ?? "");
      for (const env of childElements(node, `${prefix}:env`)) {
        notes.push(`<qemu:env> ${env.attrs.name} (qvm does not set QEMU's environment)`);
      }
    } else if (!IMPLIED_TOP.has(node.name)) {
      notes.push(`<${node.name}>`);
    }
  }
  const passed = commandlineItems(values);
  const onReboot = textOf(child(root, "on_reboot"));
  if (onReboot === "destroy" && !passed.items.includes("no-reboot")) args.push("no-reboot");
  else if (onReboot !== undefined && onReboot !== "restart" && onReboot !== "destroy") {
    notes.push(`<on_reboot>${onReboot}`);
  }
  if (passed.stray) {
    // A value with no option before it: keep the whole command line raw, in its order.
    config.args = values;
  } else {
    if (passed.display !== undefined) config.display = passed.display;
    if (passed.vga !== undefined) config.vga = passed.vga;
    args.push(...passed.items);
  }
  config.arguments = args;
  config.storage = storage;
  return { name, uuid, config, notImported: notes, exact: false };
}

/** qvm's elements in `<metadata>` by local name (`config`, `runtime`), parsed as JSON. */
function keptJson(root: XmlElement): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const node of childElements(child(root, "metadata"))) {
    const [prefix, local] = node.name.includes(":") ? node.name.split(":") : [undefined, node.name];
    const ns = prefix === undefined ? node.attrs.xmlns : node.attrs[`xmlns:${prefix}`];
    if (ns !== QVM_NS && ns !== QVM_RUNTIME_NS) continue;
    try {
      kept[local] = JSON.parse(textOf(node) ?? "");
    } catch { /* not qvm's JSON: ignored */ }
  }
  return kept;
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Refuses a kept config whose `cloud_init` names host files (a `user_data` file, a `.pub` file):
 * validating it would read that file of this host into the guest's seed. qvm's own export always
 * holds their text.
 */
function refuseHostFiles(kept: unknown): void {
  const section = isMap(kept) ? kept.cloud_init : undefined;
  if (!isMap(section)) return;
  const files: string[] = [];
  const userData = section.user_data;
  if (typeof userData === "string" && !userData.startsWith("#") && !userData.includes("\n")) {
    files.push(`cloud_init.user_data '${userData}'`);
  }
  if (Array.isArray(section.ssh_authorized_keys)) {
    for (const item of section.ssh_authorized_keys) {
      if (typeof item === "string" && !isPublicKeyLine(item)) {
        files.push(`cloud_init.ssh_authorized_keys '${item}'`);
      }
    }
  }
  if (files.length > 0) {
    throw new UsageError(
      `the domain's qvm config names a file of this host as ${files[0]}: a domain must carry ` +
        "the text itself",
    );
  }
}

/** The config qvm kept in `<metadata>`, if any and valid. */
function keptConfig(root: XmlElement): VmConfig | undefined {
  const kept = keptJson(root).config;
  if (kept === undefined) return undefined;
  refuseHostFiles(kept);
  try {
    return validateConfig(kept as Record<string, unknown>);
  } catch {
    return undefined;
  }
}

/**
 * Reads a domain XML document into a qvm config. Throws a UsageError (exit 3) when the text is not
 * XML, not a `<domain>`, or not a QEMU domain. When the XML still says exactly what qvm exported,
 * the config kept in its metadata is returned (`exact`), so the round trip keeps qvm's spelling.
 */
export function domainToConfig(text: string): ImportedDomain {
  let root: XmlElement;
  try {
    root = parseXml(text);
  } catch (err) {
    if (err instanceof XmlSyntaxError) throw new UsageError(`not XML: ${err.message}`);
    throw err;
  }
  if (root.name !== "domain") {
    throw new UsageError(`not a libvirt domain: the root element is <${root.name}>, not <domain>`);
  }
  const read = readDomain(root);
  if (read.name === "") throw new UsageError("not a libvirt domain: it has no <name>");
  const kept = keptConfig(root);
  if (kept === undefined) return read;
  const emulator = textOf(child(child(root, "devices"), "emulator"));
  try {
    const runtime = keptJson(root).runtime;
    const argv = Array.isArray(runtime) && runtime.every((a) => typeof a === "string")
      ? runtime
      : [];
    const again = domainXml(
      { id: read.uuid ?? "", name: read.name, config: kept },
      { diskDir: "/", emulator, cloud: { argv, files: [] } },
    );
    const reread = readDomain(parseXml(again.xml));
    if (comparable(reread) === comparable(read)) {
      // As written (validated again by the caller), not as validated here.
      const { name: _, ...config } = keptJson(root).config as Record<string, unknown>;
      // Everything the XML says is in the kept config: nothing is left out.
      return { ...read, config: config as Record<string, unknown>, notImported: [], exact: true };
    }
  } catch { /* the kept config does not describe this XML: read the XML alone */ }
  return read;
}
