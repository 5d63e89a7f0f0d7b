/** What one of `doctor`'s checks found: what was checked, how it came out, why it matters, the fix. */

/** How a check came out; `fixed` means `--fix` repaired it in this run. */
export type FindingStatus = "ok" | "warning" | "problem" | "fixed";

/** One check's result; `why` and `fix` are null for `ok`. */
export interface Finding {
  check: string;
  status: FindingStatus;
  what: string;
  why: string | null;
  fix: string | null;
  /** What `--fix` can do about it itself (never printed). */
  repair?: "chmod";
  /** A folder qvm refuses to use (symlink, someone else's, writable by others): exit 4. */
  refused?: boolean;
}

/** A check that came out well: nothing to explain, nothing to fix. */
export function okFinding(check: string, what: string): Finding {
  return { check, status: "ok", what, why: null, fix: null };
}

/** `n word` with an `s` unless n is 1: `1 VM`, `2 VMs`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
