/**
 * `doctor`'s checks of qvm's data and runtime dirs and the folders qvm makes in them: a folder
 * of ours, writable, mode 0700. The judgement is pure (`judgeDir`); `--fix` only ever sets the
 * mode of a real folder of ours (`repairDirMode`).
 */
import { join } from "../../path.ts";
import { type Dirs, unsafeDirReason } from "../../state/mod.ts";
import { type Finding, okFinding } from "./finding.ts";

/** The two folders doctor checks, named as their checks. */
export type DirCheck = "data_dir" | "runtime_dir";

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

/** The folders qvm makes inside the data dir and the runtime dir. */
const SUBFOLDERS = { data_dir: ["logs", "disks"], runtime_dir: ["disk-locks"] } as const;

/** The data dir and the runtime dir, each with the folders qvm makes in it. */
export function folderFindings(dirs: Dirs, options: { fix: boolean }): Finding[] {
  return [
    ...dirFindings("data_dir", dirs.dataDir, options),
    ...dirFindings("runtime_dir", dirs.runtimeDir, options),
  ];
}

/**
 * Checks a folder and the folders qvm makes in it. A refused folder (symlink, someone else's,
 * writable by others) is never touched, and nothing inside it is looked at.
 */
function dirFindings(check: DirCheck, path: string, options: { fix: boolean }): Finding[] {
  const top = judgeAndFix(check, dirFacts(path), options);
  if (top.some((f) => f.refused)) return top;
  const subs = SUBFOLDERS[check].flatMap((name) => {
    const facts = dirFacts(join(path, name), `${name} folder ${join(path, name)}`);
    return facts.exists ? judgeAndFix(check, facts, options) : [];
  });
  return [...top, ...subs.filter((f) => f.status !== "ok")];
}

/** Judges one folder; with `fix`, sets one of ours to mode 0700 when that is what is wrong. */
function judgeAndFix(check: DirCheck, facts: DirFacts, options: { fix: boolean }): Finding[] {
  return judgeDir(check, facts, { uid: Deno.uid() ?? 0 }).map((f) =>
    options.fix && f.repair === "chmod" ? repairDirMode(f, facts.path) : f
  );
}

/** `--fix` for a folder whose only fault is its mode: chmod 700, if it is still a folder of ours. */
export function repairDirMode(finding: Finding, path: string): Finding {
  try {
    // Checked again right before the chmod: only a real folder of ours is ever changed.
    if (unsafeDirReason(Deno.lstatSync(path), Deno.uid()) !== undefined) return finding;
    Deno.chmodSync(path, 0o700);
    return { ...finding, status: "fixed", fix: `chmod 700 ${path}` };
  } catch (err) {
    return { ...finding, what: `${finding.what} (chmod failed: ${(err as Error).message})` };
  }
}

/** What lstat says of `path` (a link is never followed); writability is probed only if safe. */
function dirFacts(path: string, label?: string): DirFacts {
  try {
    const info = Deno.lstatSync(path);
    const safe = unsafeDirReason(info, Deno.uid()) === undefined;
    return {
      path,
      label,
      exists: true,
      isSymlink: info.isSymlink,
      isDirectory: info.isDirectory,
      mode: info.mode ?? 0o700,
      uid: info.uid,
      writable: safe && canWrite(path),
    };
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    return { path, label, exists: false, isDirectory: false, mode: 0, uid: null, writable: false };
  }
}

/** Whether a file can be made (and removed) in `dir`. */
function canWrite(dir: string): boolean {
  try {
    const probe = Deno.makeTempFileSync({ dir, prefix: ".qvm-doctor-" });
    Deno.removeSync(probe);
    return true;
  } catch {
    return false;
  }
}

/**
 * Judges a data or runtime folder (pure): it must be a folder we own, can write, with mode 0700.
 * A missing one is fine: qvm creates it (0700) when it first needs it. A symlink, another user's
 * folder, or one writable by group or others is refused: qvm never uses it and `--fix` never
 * touches it (only a folder of ours that is merely readable by others gets a chmod).
 */
export function judgeDir(check: DirCheck, facts: DirFacts, options: { uid: number }): Finding[] {
  const label = facts.label ?? `${check === "data_dir" ? "data" : "runtime"} dir ${facts.path}`;
  const shape = judgeShape(check, facts, label);
  if (shape) return [shape];
  const refused = judgeOwner(check, facts, { label, uid: options.uid });
  if (refused.length > 0) return refused;
  const faults = judgeAccess(check, facts, label);
  return faults.length > 0 ? faults : [okFinding(check, `${label}: yours, writable, mode 0700`)];
}

/** A symlink or a non-folder (refused), or a folder not made yet (fine); undefined for a folder. */
function judgeShape(check: DirCheck, facts: DirFacts, label: string): Finding | undefined {
  const flag = `--${check.replace("_", "-")}`;
  if (facts.isSymlink) {
    return {
      check,
      status: "problem",
      what: `${label} is a symbolic link`,
      why: "whoever controls the link decides where your VMs' files go; qvm refuses to use it " +
        "and doctor --fix does not touch it",
      fix:
        `remove the link (qvm then creates a private folder), or point qvm elsewhere with ${flag}`,
      refused: true,
    };
  }
  if (!facts.exists) {
    return okFinding(check, `${label} does not exist yet (qvm creates it, mode 0700, when needed)`);
  }
  if (facts.isDirectory) return undefined;
  return {
    check,
    status: "problem",
    what: `${label} is not a folder`,
    why: "qvm cannot keep its files there, so every command that needs it fails",
    fix: `move it away, or point qvm elsewhere with ${flag}`,
    refused: true,
  };
}

/** Refusals of a folder: someone else's, or writable by others. */
function judgeOwner(
  check: DirCheck,
  facts: DirFacts,
  options: { label: string; uid: number },
): Finding[] {
  const { label, uid } = options;
  const findings: Finding[] = [];
  if (facts.uid !== null && facts.uid !== uid) {
    findings.push({
      check,
      status: "problem",
      what: `${label} belongs to uid ${facts.uid}, not to you (uid ${uid})`,
      why: "its owner controls your VMs' sockets and disks; qvm refuses to use it",
      fix: `chown ${uid} ${facts.path} (doctor --fix does not change owners)`,
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
  }
  return findings;
}

/** Faults of a folder of ours: not writable, or a mode other than 0700 (which `--fix` repairs). */
function judgeAccess(check: DirCheck, facts: DirFacts, label: string): Finding[] {
  const findings: Finding[] = [];
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
  return findings;
}

/** A mode's permission bits in octal: `0755`. */
function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, "0")}`;
}
