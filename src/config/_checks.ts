/** Checks shared by `load` (per file) and `validate` (merged config). Private to the config module. */

import { UsageError } from "../errors.ts";
import { isMap, show } from "./_util.ts";
import { argumentOption, SHORTHAND_OPTIONS, SINGLETON_OPTIONS } from "./argv.ts";
import type { ArgumentItem } from "./types.ts";

function options(raw: Record<string, unknown>): string[] {
  if (!Array.isArray(raw.arguments)) return [];
  return raw.arguments
    .filter((item) => typeof item === "string" || isMap(item))
    .map((item) => argumentOption(item as ArgumentItem));
}

/**
 * Throws a UsageError when a singleton option appears twice in `arguments`, or both as a top-level
 * key and as an argument (`memory` and `{m: ...}`). Tolerates malformed shapes.
 */
export function checkSingletons(raw: Record<string, unknown>): void {
  const seen = new Set<string>();
  const given = options(raw);
  for (const option of given) {
    if (SINGLETON_OPTIONS.has(option) && seen.has(option)) {
      throw new UsageError(`argument ${show(option)} is given twice (it may appear once)`);
    }
    seen.add(option);
  }
  for (const [key, option] of SHORTHAND_OPTIONS) {
    if (raw[key] !== undefined && raw[key] !== null && seen.has(option)) {
      throw new UsageError(
        `${key} is given twice: as '${key}' and as argument '${option}' (keep one)`,
      );
    }
  }
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
