/**
 * `doctor`'s findings: what was checked, how it came out, why it matters and the fix, plus the
 * pure judgements (folders, leftovers) and the one-line rendering for terminals and pipes.
 */
import type { UpkeepAction } from "../vm/upkeep.ts";
import { describeKind, parseRuntimeFile } from "../vm_files.ts";

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

/** The JSON shape of a finding: `{check, status, what, why, fix}`. */
export function findingJson(f: Finding): Omit<Finding, "repair"> {
  return { check: f.check, status: f.status, what: f.what, why: f.why, fix: f.fix };
}

const ESC = String.fromCharCode(27);
const MARKS: Record<FindingStatus, [string, string]> = {
  ok: ["✓", "32"],
  fixed: ["✓", "32"],
  warning: ["!", "33"],
  problem: ["✗", "31"],
};

/**
 * One line: `✗ what — why — fix: ...` on a colour terminal, `problem: what -- why -- fix: ...`
 * otherwise (plain ASCII words, no colour).
 */
export function formatFinding(f: Finding, fancy: boolean): string {
  const dash = fancy ? " — " : " -- ";
  const [mark, colour] = MARKS[f.status];
  const head = fancy
    ? `${ESC}[${colour}m${mark}${ESC}[0m ${f.status === "fixed" ? "fixed: " : ""}`
    : `${f.status}: `;
  let line = head + f.what;
  if (f.why) line += dash + f.why;
  if (f.fix) line += `${dash}${f.status === "fixed" ? "done" : "fix"}: ${f.fix}`;
  return line;
}

/** `2 problems, 1 warning, 3 fixed`, or `no problems found (1 warning)`. */
export function summarize(findings: readonly Finding[]): string {
  const count = (s: FindingStatus) => findings.filter((f) => f.status === s).length;
  const words = (n: number, word: string) => n === 1 ? `1 ${word}` : `${n} ${word}s`;
  const others: string[] = [];
  if (count("warning") > 0) others.push(words(count("warning"), "warning"));
  if (count("fixed") > 0) others.push(`${count("fixed")} fixed`);
  const problems = count("problem");
  if (problems > 0) return [words(problems, "problem"), ...others].join(", ");
  return others.length > 0 ? `no problems found (${others.join(", ")})` : "no problems found";
}

/** What `doctor` saw of a folder, by lstat (`exists: false` leaves the rest unused). */
export interface DirFacts {
  path: string;
  /** How findings name it; default `data dir PATH` or `runtime dir PATH` after the check. */
  label?: string;
  exists: boolean;
  /** The path itself is a symbolic link (never followed); `isDirectory` is then false. */
  isSymlink?: boolean;
  isDirectory: boolean;
  /** Permission bits, e.g. 0o700. */
  mode: number;
  uid: number | null;
  writable: boolean;
}

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, "0")}`;
}

/**
 * Judges a data or runtime folder (pure): it must be a folder we own, can write, with mode 0700.
 * A missing one is fine: qvm creates it (0700) when it first needs it. A symlink, another user's
 * folder, or one writable by group or others is refused: qvm never uses it and `--fix` never
 * touches it (only a folder of ours that is merely readable by others gets a chmod).
 */
export function judgeDir(
  check: "data_dir" | "runtime_dir",
  facts: DirFacts,
  myUid: number,
): Finding[] {
  const label = facts.label ?? `${check === "data_dir" ? "data" : "runtime"} dir ${facts.path}`;
  const flag = `--${check.replace("_", "-")}`;
  if (facts.isSymlink) {
    return [{
      check,
      status: "problem",
      what: `${label} is a symbolic link`,
      why: "whoever controls the link decides where your VMs' files go; qvm refuses to use it " +
        "and doctor --fix does not touch it",
      fix:
        `remove the link (qvm then creates a private folder), or point qvm elsewhere with ${flag}`,
      refused: true,
    }];
  }
  if (!facts.exists) {
    return [{
      check,
      status: "ok",
      what: `${label} does not exist yet (qvm creates it, mode 0700, when needed)`,
      why: null,
      fix: null,
    }];
  }
  if (!facts.isDirectory) {
    return [{
      check,
      status: "problem",
      what: `${label} is not a folder`,
      why: "qvm cannot keep its files there, so every command that needs it fails",
      fix: `move it away, or point qvm elsewhere with ${flag}`,
      refused: true,
    }];
  }
  const findings: Finding[] = [];
  if (facts.uid !== null && facts.uid !== myUid) {
    findings.push({
      check,
      status: "problem",
      what: `${label} belongs to uid ${facts.uid}, not to you (uid ${myUid})`,
      why: "its owner controls your VMs' sockets and disks; qvm refuses to use it",
      fix: `chown ${myUid} ${facts.path} (doctor --fix does not change owners)`,
      refused: true,
    });
  }
  if ((facts.mode & 0o022) !== 0) {
    findings.push({
      check,
      status: "problem",
      what: `${label} has mode ${octal(facts.mode)}: others can write to it`,
      why: "anyone could plant links or files among your VMs' files; qvm refuses to use it",
      fix: `check what is in it, then chmod 700 ${facts.path} (doctor --fix does not touch it)`,
      refused: true,
    });
    return findings;
  }
  if (findings.length > 0) return findings;
  if (!facts.writable) {
    findings.push({
      check,
      status: "problem",
      what: `${label} is not writable`,
      why: "qvm cannot create sockets, locks, disks or logs there",
      fix: `chmod u+w ${facts.path}`,
    });
  }
  if ((facts.mode & 0o777) !== 0o700) {
    findings.push({
      check,
      status: "problem",
      what: `${label} has mode ${octal(facts.mode)}, not 0700`,
      why: "other users could reach your VMs' QMP sockets, consoles or disks",
      fix: `chmod 700 ${facts.path} (or doctor --fix)`,
      repair: "chmod",
    });
  }
  if (findings.length > 0) return findings;
  return [{
    check,
    status: "ok",
    what: `${label}: yours, writable, mode 0700`,
    why: null,
    fix: null,
  }];
}

const FIX_HINT = "qvm cleanup (or qvm doctor --fix)";

/**
 * A cleanup action as a finding (pure): a `problem` still to fix, or `fixed` when `--fix` just
 * did it.
 */
export function actionFinding(action: UpkeepAction, fixed: boolean): Finding {
  const status: FindingStatus = fixed ? "fixed" : "problem";
  if (action.action === "settle") {
    return {
      check: "vm_status",
      status,
      what: `VM '${action.vm}' is ${action.reason}`,
      why: "the database says it is live, misleading anything that reads it until it is settled",
      fix: fixed ? "recorded as ended" : FIX_HINT,
    };
  }
  const path = action.path ?? "";
  const kind = parseRuntimeFile(path.slice(path.lastIndexOf("/") + 1))?.kind ?? "qmp";
  const why = kind === "lock"
    ? "a lock of a VM that no longer exists; harmless clutter"
    : kind === "pid"
    ? "a leftover from a QEMU that is gone; its pid may now belong to another process"
    : "a leftover from a QEMU that is gone; harmless but confusing";
  return {
    check: "runtime_files",
    status,
    what: `stale ${describeKind(kind)} ${path} (${action.reason})`,
    why,
    fix: fixed ? "removed" : FIX_HINT,
  };
}
