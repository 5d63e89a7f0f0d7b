/**
 * Checks of one config value, shared by the sections' validators: each returns the value in its
 * checked form or throws one UsageError line naming the key and the value.
 */
import { isAbsolute } from "../path.ts";
import { UsageError } from "../errors.ts";
import { kindOf, show } from "./_util.ts";

/** What an option key (in `arguments` or a storage item's `options:`) may be written with. */
export const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** A value that is set: neither undefined nor null (YAML's `~`). */
export function given(value: unknown): boolean {
  return value !== undefined && value !== null;
}

/** A non-empty string; `where` (e.g. " for storage 'hdd'") follows the value in messages. */
export function text(key: string, value: unknown, where = ""): string {
  if (value === "") throw new UsageError(`invalid ${key} ''${where}: cannot be empty`);
  if (typeof value !== "string") {
    throw new UsageError(
      `invalid ${key} ${show(value)}${where}: expected a string, got ${kindOf(value)}`,
    );
  }
  return value;
}

/** One of `choices`, any case; else a UsageError whose line `message` writes from the shown value. */
export function choice<T extends string>(
  value: unknown,
  choices: readonly T[],
  message: (shown: string) => string,
): T {
  const lower = typeof value === "string" ? value.toLowerCase() : value;
  if (typeof lower === "string" && (choices as readonly string[]).includes(lower)) {
    return lower as T;
  }
  throw new UsageError(message(show(value)));
}

/** A non-empty absolute path. */
export function absolutePath(key: string, value: unknown, where: string): string {
  const path = text(key, value, where);
  if (!isAbsolute(path)) {
    throw new UsageError(`invalid ${key} ${show(path)}${where}: must be an absolute path`);
  }
  return path;
}

/** `readonly` and friends: true/false, or the YAML 1.1 words maqet's parser read as booleans. */
export function flagOf(key: string, value: unknown, where: string): boolean {
  if (typeof value === "boolean") return value;
  if (value === 1 || value === 0) return value === 1; // maqet tests the value's truth
  const word = typeof value === "string" ? value.toLowerCase() : undefined;
  if (word === "yes" || word === "on" || word === "true") return true;
  if (word === "no" || word === "off" || word === "false") return false;
  throw new UsageError(`invalid ${key} ${show(value)}${where}: use true or false`);
}
