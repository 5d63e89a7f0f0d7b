/**
 * A config's `arguments` read for a libvirt domain: the items libvirt has an element for
 * (accelerator, memory, vCPUs, machine, direct kernel boot, ACPI) and the rest as QEMU options
 * for `<qemu:commandline>`. Pure.
 */
import { type ArgumentItem, argumentOption } from "../config/mod.ts";
import { argumentArgv } from "../qemu/argv.ts";

const NETWORK_OPTIONS = new Set(["net", "netdev", "nic"]);

/** What the `arguments` list says that libvirt has elements for, and the rest as QEMU options. */
export interface ArgumentPlan {
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

/** Sorts each `arguments` item into the element libvirt has for it, or into the passed options. */
export function planArguments(items: readonly ArgumentItem[]): ArgumentPlan {
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
