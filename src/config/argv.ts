/**
 * Building QEMU options from a validated config. Pure: the parts qvm manages itself (binary,
 * -daemonize, -qmp, -uuid, -name, -serial, -accel) are added by the caller.
 */

import { join } from "node:path";
import { isMap } from "./_util.ts";
import type {
  ArgumentItem,
  ArgValue,
  DiskStorage,
  StorageItem,
  VirtfsStorage,
  VmConfig,
} from "./types.ts";

/** `arguments` options that may appear once; a later config's item replaces an earlier one. */
export const SINGLETON_OPTIONS: ReadonlySet<string> = new Set([
  "display",
  "vga",
  "m",
  "smp",
  "machine",
  "cpu",
  "kernel",
  "initrd",
  "append",
]);

/** Top-level keys that are shorthands for an `arguments` option: `[key, option]`. */
export const SHORTHAND_OPTIONS: ReadonlyArray<readonly [string, string]> = [
  ["memory", "m"],
  ["cpu", "smp"],
  ["display", "display"],
  ["vga", "vga"],
];

function stripDashes(option: string): string {
  return option.replace(/^--?/, "");
}

/**
 * The option key of an `arguments` item: the flag itself, or the first key of a map, without
 * leading dashes (`"-nographic"` and `"nographic"` are the same option). Used to merge and check items.
 */
export function argumentOption(item: ArgumentItem): string {
  if (typeof item === "string") return stripDashes(item);
  const first = Object.keys(item)[0];
  return first === undefined ? "" : stripDashes(first);
}

/** Finds `id=X` among the comma-separated parts of a raw option string (`,,` is an escaped comma). */
function idInText(text: string): string | undefined {
  for (const part of text.split(/(?<!,),(?!,)/)) {
    if (part.startsWith("id=")) return part.slice(3).replaceAll(",,", ",");
  }
  return undefined;
}

/**
 * The `id` sub-option of an `arguments` item, wherever it is written (`{netdev: user, id: n0}`,
 * `{device: {driver: x, id: n0}}`, `{netdev: "user,id=n0"}`), or undefined. Used to merge items.
 */
export function argumentId(item: ArgumentItem): string | undefined {
  if (typeof item === "string") return undefined;
  const [first, ...rest] = Object.keys(item);
  if (first === undefined) return undefined;
  if (rest.includes("id") && item.id !== null) return String(item.id);
  const value = item[first];
  if (isMap(value)) {
    return value.id === undefined || value.id === null ? undefined : String(value.id);
  }
  if (typeof value === "string") return idInText(value);
  if (Array.isArray(value)) {
    for (const element of value) {
      const found = typeof element === "string"
        ? idInText(element)
        : isMap(element) && element.id !== undefined && element.id !== null
        ? String(element.id)
        : undefined;
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/** Escapes a single sub-option value the QEMU way: a literal comma is written `,,`. */
export function escapeValue(value: string): string {
  return value.replaceAll(",", ",,");
}

function scalarText(value: string | number | boolean): string {
  if (typeof value === "boolean") return value ? "on" : "off";
  return String(value);
}

/** `key=value` parts for one sub-option; maps and lists become dotted keys (`x.y=1`, `x.0=a`). */
function subOptions(key: string, value: ArgValue | undefined): string[] {
  if (value === null || value === undefined) return key === "" ? [] : [key];
  if (Array.isArray(value)) {
    return value.flatMap((element, i) =>
      subOptions(key === "" ? String(i) : `${key}.${i}`, element)
    );
  }
  if (typeof value === "object") {
    return Object.entries(value).flatMap(([k, v]) => subOptions(key === "" ? k : `${key}.${k}`, v));
  }
  const text = escapeValue(scalarText(value));
  return key === "" ? [text] : [`${key}=${text}`];
}

/** A list element of an option's value: scalars are raw text, maps become `k=v` parts. */
function listPart(element: ArgValue): string {
  if (element === null) return "";
  if (Array.isArray(element)) return element.map(listPart).join(",");
  if (typeof element === "object") return subOptions("", element).join(",");
  return scalarText(element);
}

/**
 * The argv for one `arguments` item: `"flag"` → `-flag`; `{k: null}` → `-k`; `{k: v}` → `-k v`;
 * `{k: [a, b]}` → `-k a,b`; `{k: {a: 1}}` → `-k a=1`; further keys of a map are `k=v` sub-options.
 */
export function argumentArgv(item: ArgumentItem): string[] {
  if (typeof item === "string") return [`-${stripDashes(item)}`];
  const [first, ...rest] = Object.keys(item);
  if (first === undefined) return [];
  const head = item[first];
  const parts: string[] = [];
  if (Array.isArray(head)) parts.push(...head.map(listPart));
  else if (isMap(head)) parts.push(...subOptions("", head));
  else if (head !== null && head !== undefined) parts.push(scalarText(head));
  for (const key of rest) parts.push(...subOptions(key, item[key]));
  const flag = `-${stripDashes(first)}`;
  return parts.length === 0 ? [flag] : [flag, parts.join(",")];
}

/** The image file of a disk: its `file`, else `<diskDir>/<name>.<type>` under qvm's data dir. */
export function diskFile(disk: DiskStorage, diskDir: string): string {
  return disk.file ?? join(diskDir, `${disk.name}.${disk.type}`);
}

function virtfsArgv(share: VirtfsStorage): string[] {
  const parts = [
    "local",
    `path=${escapeValue(share.path)}`,
    `mount_tag=${escapeValue(share.mount_tag)}`,
    `security_model=${share.security_model}`,
    `id=${escapeValue(share.name)}`,
  ];
  if (share.readonly) parts.push("readonly=on");
  return ["-virtfs", parts.join(",")];
}

/** `-drive`/`-device`/`-virtfs` options for the storage list; controllers are added once. */
function storageArgv(storage: StorageItem[], diskDir: string): string[] {
  const argv: string[] = [];
  let sataDisks = 0;
  let scsiDisks = 0;
  for (const item of storage) {
    if (item.type === "virtfs") {
      argv.push(...virtfsArgv(item));
      continue;
    }
    const iface = item.interface === "virtio" || item.interface === "ide" ? item.interface : "none";
    const file = escapeValue(diskFile(item, diskDir));
    const id = escapeValue(item.name);
    argv.push("-drive", `file=${file},format=${item.type},if=${iface},id=${id}`);
    if (item.interface === "sata") {
      if (sataDisks === 0) argv.push("-device", "ahci,id=ahci0");
      argv.push("-device", `ide-hd,drive=${id},bus=ahci0.${sataDisks}`);
      sataDisks++;
    } else if (item.interface === "scsi") {
      if (scsiDisks === 0) argv.push("-device", "virtio-scsi-pci,id=scsi0");
      argv.push("-device", `scsi-hd,drive=${id},bus=scsi0.0`);
      scsiDisks++;
    }
  }
  return argv;
}

/**
 * The QEMU options for a validated config, in order: memory, cpu, display, vga, `arguments`,
 * storage, then raw `args`. Pure; `diskDir` is where disks without a `file` live.
 */
export function configArgv(config: VmConfig, options: { diskDir: string }): string[] {
  const argv: string[] = [];
  if (config.memory !== undefined) argv.push("-m", config.memory);
  if (config.cpu !== undefined) argv.push("-smp", String(config.cpu));
  if (config.display !== undefined) argv.push("-display", config.display);
  if (config.vga !== undefined) argv.push("-vga", config.vga);
  for (const item of config.arguments) argv.push(...argumentArgv(item));
  argv.push(...storageArgv(config.storage, options.diskDir));
  argv.push(...config.args);
  return argv;
}
