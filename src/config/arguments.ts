/**
 * What identifies an `arguments` item when configs are merged and checked: its option key, its
 * `id`, whether it is a bare flag. Pure; building QEMU's argv from items is `qemu/argv.ts`'s job.
 */

import { isMap } from "./_util.ts";
import { splitOptionText } from "./qemu_opts.ts";
import type { ArgumentItem } from "./types.ts";

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

/**
 * QEMU options that take no value (QEMU 7.2's `-help`, x86 and common ones): `{enable-kvm: true}`
 * is the flag `-enable-kvm`, never `-enable-kvm on`, which QEMU reads as a disk image named "on".
 */
export const FLAG_OPTIONS: ReadonlySet<string> = new Set([
  "S",
  "s",
  "alt-grab",
  "async-teardown",
  "ctrl-grab",
  "enable-kvm",
  "enable-sync-profile",
  "full-screen",
  "mem-prealloc",
  "no-acpi",
  "no-fd-bootchk",
  "no-hpet",
  "no-quit",
  "no-reboot",
  "no-shutdown",
  "no-user-config",
  "nodefaults",
  "nographic",
  "old-param",
  "only-migratable",
  "portrait",
  "preconfig",
  "semihosting",
  "singlestep",
  "snapshot",
  "usb",
  "win2k-hack",
  "xen-attach",
  "xen-domid-restrict",
]);

/** Top-level keys that are shorthands for an `arguments` option: `[key, option]`. */
export const SHORTHAND_OPTIONS: ReadonlyArray<readonly [string, string]> = [
  ["memory", "m"],
  ["cpu", "smp"],
  ["display", "display"],
  ["vga", "vga"],
];

/** An option name without its leading dashes (`-enable-kvm` and `enable-kvm` are one option). */
export function stripDashes(option: string): string {
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

/**
 * The option of an item that is a bare flag (`"enable-kvm"`, `-enable-kvm`, `{enable-kvm: null}`,
 * `{enable-kvm: {}}`, `{enable-kvm: []}`, all written `-enable-kvm`), else undefined. A flag given twice means the
 * same as once.
 */
export function bareFlag(item: ArgumentItem): string | undefined {
  if (typeof item === "string") return stripDashes(item);
  const keys = Object.keys(item);
  if (keys.length !== 1) return undefined;
  const value = item[keys[0]];
  const empty = value === null || (Array.isArray(value) && value.length === 0) ||
    (isMap(value) && Object.keys(value).length === 0);
  return empty ? stripDashes(keys[0]) : undefined;
}

/** Finds `id=X` among the parts of QEMU option text (`,,` is an escaped comma). */
function idInText(text: string): string | undefined {
  return splitOptionText(text).find((part) => part.startsWith("id="))?.slice(3);
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
