/**
 * Merging raw configs (several files left to right, then CLI flags on top). Pure: inputs are never
 * changed. Runs before validation, so it tolerates any shape and leaves the judging to `validate`.
 */

import { clone, isMap, setKey } from "./_util.ts";
import { argumentId, argumentOption, SHORTHAND_OPTIONS, SINGLETON_OPTIONS } from "./arguments.ts";
import { parsePortSpec, type PortForward } from "./network.ts";
import type { ArgumentItem } from "./types.ts";

function optionOf(item: unknown): string | undefined {
  if (typeof item === "string" || isMap(item)) return argumentOption(item as ArgumentItem);
  return undefined;
}

function idOf(item: unknown): string | undefined {
  return isMap(item) ? argumentId(item as ArgumentItem) : undefined;
}

function own(map: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(map, key) ? map[key] : undefined;
}

/** Maps deep-merge, lists concatenate, anything else is replaced; `undefined` in `over` is "not given". */
function mergeValue(base: unknown, over: unknown): unknown {
  if (isMap(base) && isMap(over)) {
    const out = clone(base);
    for (const [key, value] of Object.entries(over)) {
      if (value !== undefined) setKey(out, key, mergeValue(own(out, key), value));
    }
    return out;
  }
  if (Array.isArray(base) && Array.isArray(over)) return [...clone(base), ...clone(over)];
  return clone(over);
}

function named(item: unknown): item is Record<string, unknown> & { name: unknown } {
  return isMap(item) && item.name !== undefined && item.name !== null;
}

function isVirtfs(item: Record<string, unknown>): boolean {
  return typeof item.type === "string" && item.type.toLowerCase() === "virtfs";
}

/* A key may be written at the top of a storage item or under its `options:` (maqet's form). When
 * `over` sets it in one place, the base's value in the other place goes: the later file wins. */
function withoutRespelled(
  earlier: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out = clone(earlier);
  const overOptions = isMap(over.options) ? over.options : {};
  const outOptions = isMap(out.options) ? out.options : undefined;
  for (const key of Object.keys(over)) {
    if (key !== "options" && outOptions !== undefined && over[key] !== undefined) {
      delete outOptions[key];
    }
  }
  for (const key of Object.keys(overOptions)) {
    if (key !== "name" && key !== "type" && overOptions[key] !== undefined) delete out[key];
  }
  return out;
}

/* Named items of `over` patch the base item of the same name; unnamed items are always new disks
 * (validation names them `storage<i>` by their place in the merged list, as maqet does). */
function mergeStorage(base: unknown[], over: unknown[]): unknown[] {
  const out = clone(base);
  for (const item of over) {
    const at = named(item)
      ? out.findIndex((earlier) => named(earlier) && earlier.name === item.name)
      : -1;
    if (at < 0) {
      out.push(clone(item));
      continue;
    }
    const earlier = out[at] as Record<string, unknown>;
    const overItem = item as Record<string, unknown>;
    const kindChanges = overItem.type !== undefined && isVirtfs(earlier) !== isVirtfs(overItem);
    out[at] = kindChanges
      ? clone(overItem)
      : mergeValue(withoutRespelled(earlier, overItem), overItem);
  }
  return out;
}

function mergeArguments(base: unknown[], over: unknown[]): unknown[] {
  const out = clone(base);
  for (const item of over) {
    const option = optionOf(item);
    const id = idOf(item);
    const at = option === undefined
      ? -1
      : base.findIndex((earlier) =>
        optionOf(earlier) === option &&
        (SINGLETON_OPTIONS.has(option) || (id !== undefined && idOf(earlier) === id))
      );
    if (at < 0) out.push(clone(item));
    else out[at] = clone(item);
  }
  return out;
}

/**
 * Merges `over` on top of `base` (both raw configs) per the spec: maps deep-merge, scalars replace,
 * `arguments` merge by option key, `storage` merges by `name`, other lists concatenate.
 *
 * - `arguments`: an item of `over` replaces (in place) the first item of `base` with the same option
 *   key when that key is a singleton (`display`, `vga`, `m`, `smp`, `machine`, `cpu`, `kernel`,
 *   `initrd`, `append`) or when both carry the same `id` sub-option; otherwise it is appended.
 * - A top-level shorthand and its option are one setting (`memory`/`m`, `cpu`/`smp`,
 *   `display`/`display`, `vga`/`vga`): whichever `over` gives removes the other spelling from `base`.
 * - `storage`: an item of `over` with a `name` deep-merges into the base item of that name, unless
 *   it changes the kind (disk vs virtfs), which replaces the item; every other item, unnamed ones
 *   included, is appended (validation names unnamed items `storage<i>` by position, like maqet).
 */
export function mergeConfigs(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = clone(base);
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    if (key === "arguments" && Array.isArray(out.arguments) && Array.isArray(value)) {
      out.arguments = mergeArguments(out.arguments, value);
    } else if (key === "storage" && Array.isArray(out.storage) && Array.isArray(value)) {
      out.storage = mergeStorage(out.storage, value);
    } else {
      setKey(out, key, mergeValue(own(out, key), value));
    }
  }
  const overArguments = Array.isArray(over.arguments) ? over.arguments : [];
  for (const [key, option] of SHORTHAND_OPTIONS) {
    const overHasKey = over[key] !== undefined;
    const overHasOption = overArguments.some((item) => optionOf(item) === option);
    if (overHasKey && !overHasOption && Array.isArray(out.arguments)) {
      out.arguments = out.arguments.filter((item) => optionOf(item) !== option);
    } else if (overHasOption && !overHasKey) {
      delete out[key];
    }
  }
  return out;
}

/** The forward `item` reads as, or undefined when it is malformed (validation says so later). */
function forwardOf(item: unknown): PortForward | undefined {
  try {
    return parsePortSpec(item);
  } catch {
    return undefined;
  }
}

function portsOf(config: Record<string, unknown>): unknown[] {
  return isMap(config.network) && Array.isArray(config.network.ports) ? config.network.ports : [];
}

/** Options that pick QEMU's accelerator: a flag's `accel` replaces every one of them. */
const ACCEL_OPTIONS = new Set(["accel", "enable-kvm"]);

/**
 * Merges command-line flags (`over`) onto the merged configs (`base`) as `mergeConfigs` does,
 * except that a flag changes a setting instead of adding a second one beside it: a forward given
 * by a flag replaces the earlier forwards to the same guest port and protocol, and an `accel`
 * given by a flag replaces the earlier `accel` and `enable-kvm` items.
 */
export function mergeFlags(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out = { ...base };
  const guests = new Set(
    portsOf(over).map(forwardOf).filter((f) => f !== undefined).map((f) => `${f.guest}/${f.proto}`),
  );
  if (guests.size > 0 && isMap(base.network) && Array.isArray(base.network.ports)) {
    const kept = base.network.ports.filter((item) => {
      const forward = forwardOf(item);
      return forward === undefined || !guests.has(`${forward.guest}/${forward.proto}`);
    });
    out.network = { ...base.network, ports: kept };
  }
  const overArguments = Array.isArray(over.arguments) ? over.arguments : [];
  if (overArguments.some((item) => optionOf(item) === "accel") && Array.isArray(base.arguments)) {
    out.arguments = base.arguments.filter((item) => !ACCEL_OPTIONS.has(optionOf(item) ?? ""));
  }
  return mergeConfigs(out, over);
}
