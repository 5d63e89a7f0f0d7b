/**
 * `doctor`'s database checks: can it be opened and read, does it pass `integrity_check`, can it be
 * written (space, read-only data dir), how old its backups are, and whether it lost VMs (fewer
 * than its latest backup, or runtime files of VMs it does not know). Every way out is spelled out:
 * restore a backup, or salvage with `sqlite3 .recover`.
 */
import type { VmEnv } from "../env.ts";
import { ExitCode, QvmError, StateDamagedError, type StateWriteError } from "../../errors.ts";
import {
  backupFolder,
  databasePath,
  listBackups,
  probeDatabaseWrite,
  readVms,
  type StateStore,
} from "../../state/mod.ts";
import { parseRuntimeFile } from "../../vm_files.ts";
import { type Finding, okFinding, plural } from "./finding.ts";

/** What the database checks found, and whether the checks that need the VMs can run. */
export interface DatabaseReport {
  findings: Finding[];
  /** The VMs can be read: the other checks may use the store. */
  usable: boolean;
  /** The database can be written: `--fix` may change it. */
  writable: boolean;
}

const CHECK = "database";

/** Every database check; never throws for a database that is damaged, lost, full or read-only. */
export function databaseFindings(env: VmEnv): DatabaseReport {
  const path = databasePath(env.dirs.dataDir);
  let store: StateStore;
  try {
    store = env.store;
  } catch (err) {
    if (!(err instanceof QvmError)) throw err;
    return unopenedReport(env, { path, err });
  }
  const failure = integrityFailure(store);
  if (failure) {
    const finding: Finding = {
      check: CHECK,
      status: "problem",
      what: `database ${path} fails ${failure}`,
      why: "qvm's record of your VMs may be wrong or lost; commands that read it fail",
      fix: recoveryAdvice(path),
    };
    return { findings: [finding], usable: false, writable: false };
  }
  return openedReport(env, { path, store });
}

/** A database that cannot be opened: why, the way out, and runtime files of VMs it lost. */
function unopenedReport(env: VmEnv, failed: { path: string; err: QvmError }): DatabaseReport {
  const { path, err } = failed;
  const damaged = err instanceof StateDamagedError;
  const finding: Finding = {
    check: CHECK,
    status: "problem",
    what: err.message.replace(/: run 'qvm doctor'.*$/, ""),
    why: "qvm cannot read its VMs, so the checks that need them were skipped",
    fix: unopenedFix(env, { path, err }),
  };
  const lost = damaged ? unknownVmFindings(env, path, { live: new Set(), lost: true }) : [];
  return { findings: [finding, ...lost], usable: false, writable: false };
}

/** The fix for a database that cannot be opened, by why it cannot. */
function unopenedFix(env: VmEnv, failed: { path: string; err: QvmError }): string {
  const { path, err } = failed;
  const runtimeDir = env.dirs.runtimeDir;
  if (err.exitCode === ExitCode.permission) {
    return `see who owns ${path} and its mode (ls -l ${path}), then make it readable and ` +
      "writable by you (chown, chmod u+rw); the database itself is not damaged";
  }
  if (!(err instanceof StateDamagedError)) return `move ${path} aside and restore a backup`;
  if (/ holds sockets or pid files /.test(err.message)) {
    return `${recoveryAdvice(path)}; if those VMs are gone for good, remove their files from ` +
      `${runtimeDir} (rm ${runtimeDir}/<id>.*)`;
  }
  if (/ is (empty|missing), but /.test(err.message)) {
    return `${recoveryAdvice(path)}; to start with no VMs on purpose, move ${backupFolder(path)} ` +
      "aside instead";
  }
  return recoveryAdvice(path);
}

/** An opened database that passed its integrity checks: writable, its backups, lost VMs. */
function openedReport(env: VmEnv, opened: { path: string; store: StateStore }): DatabaseReport {
  const { path, store } = opened;
  const findings = [okFinding(CHECK, `database ${path}: integrity_check and quick_check ok`)];
  const cannot = store.cannotWrite ?? probeDatabaseWrite(path);
  if (cannot) findings.push(writeFinding(path, cannot));
  let live: Set<string>;
  try {
    live = new Set(store.listBrief().map((vm) => vm.id));
  } catch (err) {
    if (!(err instanceof QvmError)) throw err;
    findings.push({
      check: CHECK,
      status: "problem",
      what: err.message,
      why: "qvm cannot read its VMs, so the checks that need them were skipped",
      fix: recoveryAdvice(path),
    });
    return { findings, usable: false, writable: false };
  }
  // A read-only data dir takes no backups and needs none: its database is intact.
  const readOnlyDir = cannot?.exitCode === ExitCode.permission;
  if (!readOnlyDir) findings.push(...backupFindings(path, live));
  findings.push(...unknownVmFindings(env, path, { live, lost: false }));
  return { findings, usable: true, writable: cannot === undefined };
}

/**
 * The way out for a damaged or lost database: the exact commands that put the latest backup in
 * place (when there is one), and `sqlite3 .recover` to salvage what is still readable.
 */
function recoveryAdvice(path: string): string {
  const latest = listBackups(path)[0];
  const salvage =
    `salvage what is readable: sqlite3 ${path} .recover | sqlite3 ${path}.recovered ` +
    `(then put ${path}.recovered in its place the same way)`;
  if (!latest) return `no backup exists yet in ${backupFolder(path)}; ${salvage}`;
  return `restore qvm's latest backup (written ${latest.writtenAt.toISOString()}): ` +
    `mv ${path} ${path}.damaged; rm -f ${path}-wal ${path}-shm; cp ${latest.path} ${path} ` +
    `-- or ${salvage}`;
}

/** The first of `integrity_check` and `quick_check` that does not answer `ok`, with its lines. */
function integrityFailure(store: StateStore): string | undefined {
  for (const pragma of ["integrity_check", "quick_check"]) {
    let lines: string[];
    try {
      const rows = store.db.prepare(`PRAGMA ${pragma}`).all() as Record<string, string>[];
      lines = rows.map((r) => String(Object.values(r)[0]));
    } catch (err) {
      return `${pragma}: ${(err as Error).message}`;
    }
    if (lines.length !== 1 || lines[0] !== "ok") {
      return `${pragma}: ${lines.slice(0, 3).join("; ")}`;
    }
  }
  return undefined;
}

/** A database that cannot be written: a warning on a read-only data dir, a problem when full. */
function writeFinding(path: string, cannot: StateWriteError): Finding {
  if (cannot.exitCode === ExitCode.permission) {
    return {
      check: CHECK,
      status: "warning",
      what: cannot.message,
      why: "VMs can be listed and inspected, but not added, changed, started, stopped or removed",
      fix: `make the data dir writable again (e.g. mount -o remount,rw, or its permissions); ` +
        `${path} itself is intact and needs no recovery`,
    };
  }
  return {
    check: CHECK,
    status: "problem",
    what: cannot.message,
    why: "qvm cannot record changes: adding, starting, stopping or removing VMs fails",
    fix: `free some space on the file system of ${path} (the database itself is intact)`,
  };
}

/** The latest backup against the live database: a backup with more VMs means VMs were lost. */
function backupFindings(path: string, live: Set<string>): Finding[] {
  const backups = listBackups(path);
  const latest = backups[0];
  if (!latest) {
    return [okFinding(
      CHECK,
      `no backups yet in ${backupFolder(path)} (qvm makes one after each command that ` +
        "adds, changes or removes a VM)",
    )];
  }
  let saved: { id: string; name: string }[];
  try {
    saved = readVms(latest.path);
  } catch (err) {
    return [{
      check: CHECK,
      status: "warning",
      what: `the latest backup ${latest.path} cannot be read: ${(err as Error).message}`,
      why: "it could not be used to restore the database",
      fix: `remove it; an older one (${plural(backups.length - 1, "more backup")}) stays`,
    }];
  }
  const missing = saved.filter((vm) => !live.has(vm.id));
  if (live.size < saved.length && missing.length > 0) {
    return [lostFinding(path, { latest, saved: saved.length, live: live.size, missing })];
  }
  return [okFinding(
    CHECK,
    `${plural(backups.length, "backup")} in ${backupFolder(path)}; the latest (written ` +
      `${latest.writtenAt.toISOString()}) holds ${plural(saved.length, "VM")}`,
  )];
}

/** VMs the latest backup holds and the database does not: lost outside qvm. */
function lostFinding(
  path: string,
  counts: {
    latest: { path: string; writtenAt: Date };
    saved: number;
    live: number;
    missing: { name: string }[];
  },
): Finding {
  const { latest, missing } = counts;
  const names = missing.slice(0, 5).map((vm) => `'${vm.name}'`).join(", ");
  return {
    check: CHECK,
    status: "problem",
    what: `database ${path} holds ${plural(counts.live, "VM")}, but its latest backup ` +
      `${latest.path} (written ${latest.writtenAt.toISOString()}) holds ${counts.saved}; ` +
      `missing: ${names}${missing.length > 5 ? ", ..." : ""}`,
    why: "qvm refreshes that backup after every change it makes, so these VMs were lost from " +
      "the database outside qvm (or the backup after a removal could not be written)",
    fix: recoveryAdvice(path),
  };
}

/** The ids of VMs that have sockets or pid files in the runtime dir but are not in `live`. */
function unknownIds(runtimeDir: string, live: Set<string>): Set<string> {
  const unknown = new Set<string>();
  try {
    for (const entry of Deno.readDirSync(runtimeDir)) {
      const file = parseRuntimeFile(entry.name);
      // A lock file may outlive its VM on purpose; sockets and pid files never do.
      if (file && file.kind !== "lock" && !live.has(file.id)) unknown.add(file.id);
    }
  } catch { /* no runtime dir: nothing left behind */ }
  return unknown;
}

/**
 * Sockets and pid files in the runtime dir of VMs the database does not know. With a readable
 * database they are reported here only when the latest backup holds those VMs (otherwise the
 * runtime check reports them as leftovers); with a lost database, always.
 */
function unknownVmFindings(
  env: VmEnv,
  path: string,
  options: { live: Set<string>; lost: boolean },
): Finding[] {
  const unknown = unknownIds(env.dirs.runtimeDir, options.live);
  if (unknown.size === 0) return [];
  let inBackup: { id: string; name: string }[] = [];
  const latest = listBackups(path)[0];
  try {
    if (latest) inBackup = readVms(latest.path).filter((vm) => unknown.has(vm.id));
  } catch { /* an unreadable backup is reported on its own */ }
  if (inBackup.length === 0 && !options.lost) return [];
  const ids = [...unknown].slice(0, 3).join(", ") + (unknown.size > 3 ? ", ..." : "");
  const known = inBackup.length > 0
    ? `; the latest backup holds ${inBackup.length} of them (` +
      inBackup.slice(0, 3).map((vm) => `'${vm.name}'`).join(", ") + ")"
    : "";
  return [{
    check: CHECK,
    status: "problem",
    what: `runtime files in ${env.dirs.runtimeDir} belong to ${plural(unknown.size, "VM")} the ` +
      `database does not know: ${ids}${known}`,
    why: "qvm removes a VM's sockets and pid file with the VM, so the database may have lost VMs",
    fix: inBackup.length > 0
      ? recoveryAdvice(path)
      : "if no VM is missing, these are leftovers: qvm cleanup (or qvm doctor --fix)",
  }];
}
