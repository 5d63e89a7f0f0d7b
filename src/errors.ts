/**
 * qvm's error hierarchy: errors are values that carry their exit code, thrown deep and turned into
 * one line on stderr at the single boundary in `main.ts`.
 */

/** Exit codes, as documented in `qvm --help` and README.md. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  timeout: 2,
  invalid: 3,
  permission: 4,
} as const;

/** A failure the user should see as one line; `exitCode` is what the process exits with. */
export class QvmError extends Error {
  exitCode: number = ExitCode.failure;
  /** Optional extra lines (e.g. QEMU's own stderr) printed after the message. */
  detail?: string;
  constructor(message: string, options?: { detail?: string; cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.name = "QvmError";
    this.detail = options?.detail;
  }
}

/** Bad input: unknown command or flag, malformed config, bad name or value. Exit 3. */
export class UsageError extends QvmError {
  override exitCode: number = ExitCode.invalid;
  override name = "UsageError";
}

/** The named VM, file or object does not exist. Exit 3. */
export class NotFoundError extends QvmError {
  override exitCode: number = ExitCode.invalid;
  override name = "NotFoundError";
}

/** A wait ran out of time (boot, QMP, stop). Exit 2. */
export class TimeoutError extends QvmError {
  override exitCode: number = ExitCode.timeout;
  override name = "TimeoutError";
}

/** The OS refused access (file modes, /dev/kvm, another user's process). Exit 4. */
export class PermissionError extends QvmError {
  override exitCode: number = ExitCode.permission;
  override name = "PermissionError";
}

/** The command needs a running VM and this one is not. Exit 3. */
export class NotRunningError extends QvmError {
  override exitCode: number = ExitCode.invalid;
  override name = "NotRunningError";
}

/**
 * The state database could not be written (no space, I/O error, read-only data dir); nothing was
 * changed. Exit 1, or 4 when the cause is a permission or a read-only file system. Catch it where
 * an action must go on although its record cannot be written (e.g. `stop` still stops QEMU).
 */
export class StateWriteError extends QvmError {
  override name = "StateWriteError";
  constructor(
    message: string,
    options?: { detail?: string; cause?: unknown; permission?: boolean },
  ) {
    super(message, options);
    if (options?.permission) this.exitCode = ExitCode.permission;
  }
}

/** The state database is damaged, or missing while qvm's backups hold VMs: `qvm doctor` explains. Exit 1. */
export class StateDamagedError extends QvmError {
  override name = "StateDamagedError";
}

/**
 * The command was interrupted (Ctrl-C, SIGTERM) and stopped cleanly, undoing what it had made.
 * Exit 128 + the signal's number, as a shell reports a process the signal ended: 130 or 143.
 */
export class InterruptedError extends QvmError {
  override name = "InterruptedError";
  constructor(signal: "SIGINT" | "SIGTERM", message: string) {
    super(message);
    this.exitCode = signal === "SIGINT" ? 130 : 143;
  }
}

/** What the user is told about a failure: one line, optional detail lines, and the exit code. */
export interface ErrorReport {
  message: string;
  detail?: string;
  exitCode: number;
}

/**
 * Turns any error into what qvm prints and exits with: a QvmError as it is, the OS's refusals as
 * permission (4) or failure (1) lines, anything else as an internal error (1). `main.ts` reports a
 * command's error this way, and a command on many VMs each VM's.
 */
export function errorReport(err: unknown): ErrorReport {
  if (err instanceof QvmError) {
    return { message: err.message, detail: err.detail, exitCode: err.exitCode };
  }
  const message = (err as Error)?.message ?? String(err);
  if (err instanceof Deno.errors.PermissionDenied) {
    return { message: `permission denied: ${message}`, exitCode: ExitCode.permission };
  }
  if (/\(os error 30\)/.test(message)) {
    return {
      message: `read-only file system: ${message.replace(/^.*\(os error 30\):?\s*/, "")}`,
      exitCode: ExitCode.permission,
    };
  }
  if (/\(os error (28|122)\)/.test(message)) {
    return {
      message: `no space left on the device: ${message.replace(/^.*\(os error \d+\):?\s*/, "")}`,
      exitCode: ExitCode.failure,
    };
  }
  return { message: `internal error: ${message}`, exitCode: ExitCode.failure };
}

/**
 * Edit distance of `a` and `b`, ignoring case: insertions, deletions, replacements and swaps of
 * two neighbours (`memroy` → `memory` is one) each count one.
 */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  // Three rows of the table: two back (for swaps), the last, and the one being filled.
  let older: number[] = [];
  let last = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const row = [i];
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let best = Math.min(last[j] + 1, row[j - 1] + 1, last[j - 1] + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) {
        best = Math.min(best, older[j - 2] + 1);
      }
      row.push(best);
    }
    older = last;
    last = row;
  }
  return last[t.length];
}

/**
 * The candidates that look like a typo of `word` (at most three, the closest): one edit away;
 * else the one candidate that `word` (three letters or more) begins; else within a third of
 * `word`'s length (words of six letters or more). Never for a single letter, nor a candidate
 * with more than half of its letters changed.
 */
export function closeMatches(word: string, candidates: Iterable<string>): string[] {
  const limit = Math.max(1, Math.floor(word.length / 3));
  const scored: { candidate: string; distance: number }[] = [];
  const prefixed: string[] = [];
  for (const candidate of candidates) {
    if (candidate === word) continue;
    // A length gap larger than the limit cannot be within it: skip the table.
    if (word.length >= 2 && Math.abs(candidate.length - word.length) <= limit) {
      const distance = editDistance(word, candidate);
      // At most half of the letters changed: `s` is no typo of `ls`, `rn` may be one of `rm`.
      const longer = Math.max(word.length, candidate.length);
      if (distance <= limit && 2 * distance <= longer) scored.push({ candidate, distance });
    }
    if (word.length >= 3 && candidate.toLowerCase().startsWith(word.toLowerCase())) {
      prefixed.push(candidate);
    }
  }
  const best = Math.min(...scored.map((s) => s.distance));
  // One edit is the surest sign of a typo; then a word that begins a single candidate.
  if (best > 1 && prefixed.length === 1) return prefixed;
  return scored.filter((s) => s.distance === best).map((s) => s.candidate).slice(0, 3);
}

/**
 * `: did you mean 'x'?` (or `'x' or 'y'`) for the close matches of `word` among `candidates`, each
 * shown through `show`; "" when none is close. Appended to "unknown ..." messages.
 */
export function didYouMean(
  word: string,
  candidates: Iterable<string>,
  show: (candidate: string) => string = (c) => `'${c}'`,
): string {
  const matches = closeMatches(word, candidates).map(show);
  if (matches.length === 0) return "";
  const list = matches.length === 1
    ? matches[0]
    : `${matches.slice(0, -1).join(", ")} or ${matches[matches.length - 1]}`;
  return `: did you mean ${list}?`;
}
