/** Checks shared by `load` (per file) and `validate` (merged config). Private to the config module. */

import { UsageError } from "../errors.ts";
import { isMap, show } from "./_util.ts";
import { given } from "./_values.ts";
import { argumentOption, SHORTHAND_OPTIONS, SINGLETON_OPTIONS } from "./arguments.ts";
import type { ArgumentItem } from "./types.ts";

/**
 * qvm's commands. A config key spelled like one (`start:`, `stop:`, as old maqet configs had) is a
 * command someone meant to run, not a VM setting; `storage` and `image` are both and stay settings.
 */
export const COMMAND_KEYS: ReadonlySet<string> = new Set([
  "add",
  "apply",
  "start",
  "stop",
  "restart",
  "wait",
  "events",
  "rm",
  "ls",
  "status",
  "info",
  "inspect",
  "logs",
  "console",
  "qmp",
  "snapshot",
  "cleanup",
  "doctor",
  "completions",
  "ssh",
  "ssh-config",
  "cp",
  "exec",
  "ip",
  "ports",
  "clone",
  "export",
  "import-libvirt",
  "launch",
]);

function options(raw: Record<string, unknown>): string[] {
  if (!Array.isArray(raw.arguments)) return [];
  return raw.arguments
    .filter((item) => typeof item === "string" || isMap(item))
    .map((item) => argumentOption(item as ArgumentItem));
}

/** Throws a UsageError when a top-level key is a qvm command (maqet refuses these too). */
export function checkCommandKeys(raw: Record<string, unknown>): void {
  for (const key of Object.keys(raw)) {
    if (COMMAND_KEYS.has(key)) {
      throw new UsageError(
        `config key '${key}' is a qvm command, not a VM setting: run 'qvm ${key} VM' instead ` +
          "(a config holds VM settings only)",
      );
    }
  }
}

/** Throws a UsageError when a singleton option appears twice in `arguments`. Tolerates bad shapes. */
export function checkSingletons(raw: Record<string, unknown>): void {
  const seen = new Set<string>();
  for (const option of options(raw)) {
    if (SINGLETON_OPTIONS.has(option) && seen.has(option)) {
      throw new UsageError(`argument ${show(option)} is given twice (it may appear once)`);
    }
    seen.add(option);
  }
}

/** An `arguments` item as it reads in YAML flow style: `{m: 2G}`, `enable-kvm`. */
function itemText(item: unknown): unknown {
  if (!isMap(item)) return item;
  const text = (value: unknown) =>
    value === null ? "null" : typeof value === "object" ? JSON.stringify(value) : String(value);
  return `{${Object.entries(item).map(([k, v]) => `${k}: ${text(v)}`).join(", ")}}`;
}

/**
 * A top-level key and its option in `arguments` (`memory: 4G` and `{m: 2G}`) both set one thing.
 * maqet emits both, in the order of the config's keys, and QEMU keeps the last; so does qvm: the
 * spelling whose key comes later in the map wins, the other is dropped with a warning. Returns a
 * shallow copy when something was dropped.
 */
export function settleShorthands(
  raw: Record<string, unknown>,
  warn: (message: string) => void,
): Record<string, unknown> {
  if (!Array.isArray(raw.arguments)) return raw;
  let out = raw;
  const keys = Object.keys(raw);
  for (const [key, option] of SHORTHAND_OPTIONS) {
    if (!given(raw[key])) continue;
    const items = (out.arguments as unknown[]).filter((item) =>
      (typeof item === "string" || isMap(item)) && argumentOption(item as ArgumentItem) === option
    );
    if (items.length === 0) continue;
    const argumentsLater = keys.indexOf("arguments") > keys.indexOf(key);
    const shownArg = show(itemText(items.at(-1)));
    const shownKey = `'${key}: ${String(raw[key])}'`;
    out = { ...out };
    if (argumentsLater) {
      delete out[key];
    } else {
      out.arguments = (out.arguments as unknown[]).filter((item) => !items.includes(item));
    }
    warn(
      `${key} is given twice, as ${shownKey} and as argument ${shownArg}; QEMU uses the later ` +
        `one, so qvm keeps ${argumentsLater ? shownArg : shownKey}`,
    );
  }
  return out;
}

function optionItems(raw: Record<string, unknown>, option: string): unknown[] {
  if (!Array.isArray(raw.arguments)) return [];
  return raw.arguments.filter((item) =>
    (typeof item === "string" || isMap(item)) && argumentOption(item as ArgumentItem) === option
  );
}

/**
 * Warnings for a setting that a later config gives in the other spelling than an earlier one
 * (`memory: 4G` in one file, `{m: 2G}` in the next): the later config wins (see `mergeConfigs`).
 */
export function shorthandsAcross(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): string[] {
  const messages: string[] = [];
  for (const [key, option] of SHORTHAND_OPTIONS) {
    const overItem = optionItems(over, option).at(-1);
    const baseItem = optionItems(base, option).at(-1);
    const kept = given(over[key]) && overItem === undefined && baseItem !== undefined
      ? [show(itemText(baseItem)), `'${key}: ${String(over[key])}'`]
      : overItem !== undefined && !given(over[key]) && given(base[key])
      ? [`'${key}: ${String(base[key])}'`, show(itemText(overItem))]
      : undefined;
    if (kept) {
      messages.push(
        `${key} is given twice, as ${kept[0]} in an earlier config and as ${kept[1]} here; ` +
          `the later config wins, so qvm keeps ${kept[1]}`,
      );
    }
  }
  return messages;
}

/** The effective name of each storage item: its `name`, else `storage<i>` by position. */
export function storageNames(storage: unknown[]): unknown[] {
  return storage.map((item, i) =>
    isMap(item) && item.name !== undefined && item.name !== null ? item.name : `storage${i}`
  );
}

/** Throws a UsageError naming the first storage name used twice. */
export function checkStorageNames(raw: Record<string, unknown>): void {
  if (!Array.isArray(raw.storage)) return;
  const seen = new Set<unknown>();
  for (const name of storageNames(raw.storage)) {
    if (seen.has(name)) throw new UsageError(`duplicate storage name ${show(name)}`);
    seen.add(name);
  }
}
