/**
 * A domain's elements read into a qvm config, the XML alone: memory, vCPUs, accelerator, machine,
 * direct kernel boot, ACPI, `<devices>` and `<qemu:commandline>`. Pure. What qvm cannot carry is
 * a note in `notImported`, never dropped in silence.
 */
import { UsageError } from "../errors.ts";
import { stripDashes } from "../config/mod.ts";
import { devicesOf } from "./_import_devices.ts";
import { QEMU_NS } from "./export.ts";
import { child, childElements, textOf, type XmlElement } from "./xml.ts";

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
/** Top-level elements qvm reads, or whose usual values say nothing qvm must carry. */
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

/** `<memory>` (or `<currentMemory>`) in the largest unit it divides into; a bad one is a note. */
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

/** What is read so far: the raw config, its `arguments` items, and what was not imported. */
interface Reading {
  config: Record<string, unknown>;
  args: unknown[];
  notes: string[];
}

/** The accelerator of a domain's `type`; anything but a QEMU domain is a UsageError. */
function accelOf(root: XmlElement): unknown {
  const type = root.attrs.type;
  if (type === "qemu") return { accel: "tcg" };
  if (type === "kvm") return { accel: "kvm" };
  throw new UsageError(`domain type '${type}' is not a QEMU domain (expected kvm or qemu)`);
}

/** `<memory>`, `<currentMemory>` and `<vcpu>`. */
function readSizing(root: XmlElement, { config, notes }: Reading): void {
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
}

/** The emulator (or architecture), machine and direct kernel boot of `<os>` and `<devices>`. */
function readOs(root: XmlElement, { config, args, notes }: Reading): void {
  const os = child(root, "os");
  const osType = child(os, "type");
  const emulator = textOf(child(child(root, "devices"), "emulator"));
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
}

/**
 * A note for a `<cpu>` other than the one libvirt writes for a domain without one (QEMU's
 * default CPU). A running domain's (check='full') also lists the features QEMU's model has on
 * this host.
 */
function cpuNotes(cpu: XmlElement | undefined): string[] {
  const expanded = (cpu: XmlElement, node: XmlElement): boolean =>
    cpu.attrs.check === "full" && node.name === "feature" && node.attrs.policy === "require";
  const cpuModel = textOf(child(cpu, "model"));
  if (
    cpu !== undefined &&
    ((cpu.attrs.mode ?? "custom") !== "custom" || ![undefined, "", "qemu64"].includes(cpuModel) ||
      childElements(cpu).some((c) => c.name !== "model" && !expanded(cpu, c)))
  ) {
    return [
      `<cpu>${cpu.attrs.mode ? ` mode '${cpu.attrs.mode}'` : ""}` +
      (cpuModel ? ` model '${cpuModel}'` : ""),
    ];
  }
  return [];
}

/** `<features>` (ACPI, or `no-acpi`) and what the guest's power-off and crash do. */
function readFeatures(root: XmlElement, { args, notes }: Reading): void {
  const features = child(root, "features");
  if (child(features, "acpi") === undefined) args.push("no-acpi");
  for (const feature of childElements(features)) {
    if (!DEFAULT_FEATURES.has(feature.name)) notes.push(`feature <${feature.name}>`);
  }
  for (const [tag, usual] of [["on_poweroff", "destroy"], ["on_crash", "destroy"]]) {
    const value = textOf(child(root, tag));
    if (value !== undefined && value !== usual) notes.push(`<${tag}>${value}`);
  }
}

/**
 * The values of `<qemu:commandline>`'s `<qemu:arg>`s, in order; its `<qemu:env>`s and any other
 * top-level element qvm has no use for are notes.
 */
function commandlineValues(root: XmlElement, notes: string[]): string[] {
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
  return values;
}

/**
 * `<qemu:commandline>` (as `arguments` items, or raw `args`), then `<on_reboot>`; other top-level
 * elements qvm has no use for are notes.
 */
function readPassed(root: XmlElement, { config, args, notes }: Reading): void {
  const values = commandlineValues(root, notes);
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
}

/** The qvm config of a domain, by reading its elements alone. */
export function readDomain(root: XmlElement): ImportedDomain {
  const name = textOf(child(root, "name")) ?? "";
  const uuid = textOf(child(root, "uuid"));
  const reading: Reading = { config: {}, args: [accelOf(root)], notes: [] };
  readSizing(root, reading);
  readOs(root, reading);
  reading.notes.push(...cpuNotes(child(root, "cpu")));
  readFeatures(root, reading);
  const { storage, agent } = devicesOf(child(root, "devices"), reading.notes);
  if (agent) reading.config.guest_agent = true;
  readPassed(root, reading);
  reading.config.arguments = reading.args;
  reading.config.storage = storage;
  return { name, uuid, config: reading.config, notImported: reading.notes, exact: false };
}
