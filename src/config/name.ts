/** VM names: what a name may look like, so that it is safe in paths and never mistaken for an id. */

import { UsageError } from "../errors.ts";
import { sha256Hex } from "../sha256.ts";
import { show } from "./_util.ts";

/** The full shape of a valid VM name (letters, digits, `.`, `_`, `-`; 1..63 characters). */
export const NAME_PATTERN: RegExp = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `value` has the shape of a VM id (a UUID, 8-4-4-4-12 hex digits, any case). */
export function looksLikeId(value: string): boolean {
  return UUID_PATTERN.test(value);
}

/**
 * Returns `name` when it is a valid VM name; otherwise throws a UsageError saying why (empty, too
 * long, bad character or leading character, or shaped like an id, which would make lookups ambiguous).
 */
export function validateName(name: string): string {
  if (typeof name !== "string") {
    throw new UsageError(`invalid name ${show(name)}: a name must be a string`);
  }
  if (name === "") throw new UsageError("invalid name '': a name cannot be empty");
  const bad = /[^A-Za-z0-9._-]/u.exec(name);
  if (bad) {
    throw new UsageError(
      `invalid name ${show(name)}: character ${show(bad[0])} is not allowed ` +
        "(use letters, digits, '.', '_' and '-')",
    );
  }
  if (!/^[A-Za-z0-9]/.test(name)) {
    throw new UsageError(
      `invalid name ${show(name)}: a name must start with a letter or digit, not ${show(name[0])}`,
    );
  }
  if (name.length > 63) {
    throw new UsageError(
      `invalid name ${show(name)}: a name has at most 63 characters (this one has ${name.length})`,
    );
  }
  if (looksLikeId(name)) {
    throw new UsageError(
      `invalid name ${show(name)}: a name cannot look like a VM id (a UUID); choose another name`,
    );
  }
  return name;
}

/** A QEMU id: a letter, then letters, digits, '.', '_' and '-' (QEMU's `id_wellformed`). */
const QEMU_ID_PATTERN = /^[A-Za-z][A-Za-z0-9._-]{0,62}$/;

/**
 * Checks a storage item's name, which names its disk file (`<name>.qcow2`, as maqet names it):
 * any letters, digits, spaces and punctuation, 1 to 63 characters, but no '/', no control
 * characters, no leading '.', no space at either end. Returns the problem, or undefined.
 */
export function storageNameProblem(name: string): string | undefined {
  const length = [...name].length;
  if (length === 0 || length > 63) return "use 1 to 63 characters";
  if (name.includes("/")) return "'/' is not allowed (the name is its disk's file name)";
  if (/\p{Cc}/u.test(name)) return "control characters are not allowed";
  if (name.startsWith(".")) return "it cannot start with '.'";
  if (name.trim() !== name) return "it cannot start or end with a space";
  return undefined;
}

/**
 * The QEMU id of storage item `name` (its `-drive id=`, `-virtfs id=`): the name itself when it
 * is a valid QEMU id, else one made from it, readable and unique (`qvm-my_disk-1a2b3c4d`).
 */
export function storageId(name: string): string {
  if (QEMU_ID_PATTERN.test(name)) return name;
  const readable = name.normalize("NFKD").replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 40);
  return `qvm-${readable}-${sha256Hex(name).slice(0, 8)}`;
}
