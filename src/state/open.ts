/**
 * Opening the state database safely: a file that is not SQLite is refused untouched, a missing or
 * emptied one is refused while qvm's backups or runtime files show it held VMs, and a database
 * that cannot be written (a full or read-only data dir) is still opened read-only, so reads (and
 * `stop`) keep working. SQLite's failures surface as one line.
 */
import { DatabaseSync } from "node:sqlite";
import { ExitCode, QvmError, StateDamagedError, StateWriteError } from "../errors.ts";
import { scanRuntimeDir } from "../vm_files.ts";
import { faultOf, translateFault } from "./_faults.ts";
import { countVms, listBackups } from "./backup.ts";
import { currentVersion, LATEST_VERSION, migrate } from "./migrate.ts";

const SQLITE_HEADER = "SQLite format 3\0";
const BUSY_TIMEOUT_MS = 10_000;
/**
 * Reads map the database file instead of copying each page in with a read call: at 100,000 VMs a
 * lookup by id went from ~7.2 to ~6.6 µs (paired, `deno task bench`), growth 100 → 100,000 VMs
 * from ~1.6x to ~1.5x. SQLite writes with write calls whatever this is; a file larger than the
 * mapping is read the usual way past it.
 */
const MMAP_BYTES = 256 * 1024 * 1024;

/**
 * Refuses a file that exists, is not empty, and is not an SQLite database; never writes to it.
 * A missing or empty file is a new database, unless qvm's backups hold VMs: then it was lost.
 */
function assertSqliteFile(path: string, options: OpenOptions): void {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return refuseLostDatabase(path, "missing");
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new StateWriteError(`cannot read the state database ${path}: permission denied`, {
        permission: true,
      });
    }
    throw new QvmError(`cannot open state database ${path}: ${(err as Error).message}`);
  }
  let n: number;
  try {
    const head = new Uint8Array(16);
    n = file.readSync(head) ?? 0;
    if (n > 0 && new TextDecoder().decode(head.subarray(0, n)) !== SQLITE_HEADER) {
      throw new StateDamagedError(
        `${path} is not an SQLite database (left untouched): run 'qvm doctor' for the way out`,
      );
    }
  } finally {
    file.close();
  }
  if (n === 0) {
    refuseLostDatabase(path, "empty");
    if (options.runtimeDir) refuseEmptiedDatabase(path, options.runtimeDir);
  }
}

function vms(count: number): string {
  return `${count} VM${count === 1 ? "" : "s"}`;
}

/** A missing or empty database is never taken as "no VMs" while the latest backup holds some. */
function refuseLostDatabase(path: string, state: "missing" | "empty"): void {
  if (path === ":memory:") return;
  const latest = listBackups(path)[0];
  if (!latest) return;
  let count: number;
  try {
    count = countVms(latest.path);
  } catch {
    return;
  }
  if (count === 0) return;
  throw new StateDamagedError(
    `the state database ${path} is ${state}, but qvm's latest backup ${latest.path} holds ` +
      `${vms(count)}: run 'qvm doctor' for how to restore it`,
  );
}

/** A VM id as qvm makes them (a lowercase UUID): what a runtime file of a VM is named after. */
const VM_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * An emptied (0-byte) database file while the runtime dir holds sockets or pid files of VMs
 * (any runtime file of a run of QEMU, see `RUNTIME_KINDS`): those VMs existed, so the file lost
 * them. (A lock file may outlive its VM; it proves nothing.)
 */
function refuseEmptiedDatabase(path: string, runtimeDir: string): void {
  const ids = new Set<string>();
  try {
    for (const [id, files] of scanRuntimeDir(runtimeDir)) {
      if (VM_ID.test(id) && files.some((file) => file.kind !== "lock")) ids.add(id);
    }
  } catch {
    return;
  }
  if (ids.size === 0) return;
  throw new StateDamagedError(
    `the state database ${path} is empty, but ${runtimeDir} holds sockets or pid files of ` +
      `${vms(ids.size)}: run 'qvm doctor' for the way out`,
  );
}

/** `file:` URI for `path` opened immutable: no -shm, no locks, nothing written (WAL ignored). */
function immutableUri(path: string): string {
  return `file:${encodeURI(path).replace(/\?/g, "%3F").replace(/#/g, "%23")}?immutable=1`;
}

/** True if `path`'s write-ahead log holds frames (which an immutable open would not see). */
function walHasFrames(path: string): boolean {
  try {
    return Deno.statSync(`${path}-wal`).size > 0;
  } catch {
    return false;
  }
}

/** What `StateStore.open` may be told about the command using it. */
export interface OpenOptions {
  /**
   * The command only reads: when the database cannot be written (read-only or full data dir),
   * status corrections found while reading are kept in memory instead of failing the command.
   */
  readOnly?: boolean;
  /** The runtime dir: an emptied database file is refused while VMs' files are in it. */
  runtimeDir?: string;
}

/** What the caller keeps of an open database; a failure here closes it. */
type Make<T> = (db: DatabaseSync, cannotWrite?: StateWriteError) => T;

/**
 * Opens (creating if absent) the database at `path`, sets the pragmas and applies pending
 * migrations, backing the file up first, and gives it to `make`. A file that is not SQLite is
 * refused untouched. When the data dir is full or read-only the database is opened read-only:
 * `make` gets the reason it cannot be written.
 */
export function openDatabase<T>(path: string, options: OpenOptions & { make: Make<T> }): T {
  assertSqliteFile(path, options);
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path);
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec("PRAGMA foreign_keys = ON");
    db.exec(`PRAGMA mmap_size = ${MMAP_BYTES}`);
  } catch (err) {
    if (db?.isOpen) db.close();
    const failure = translateFault(err, path);
    if (failure instanceof StateWriteError && path !== ":memory:") {
      return openReadOnly(path, { failure, make: options.make });
    }
    if (failure instanceof QvmError) throw failure;
    throw new QvmError(`cannot open state database ${path}: ${(err as Error).message}`);
  }
  try {
    migrate(db, path);
    return options.make(db);
  } catch (err) {
    db.close();
    throw faultOf(err) ? translateFault(err, path) : err;
  }
}

/**
 * A read-only connection to the database at `path` for a command that only looks (the quick
 * routes of `status` and `ls --json`, see `src/cli/quick.ts`), or undefined when the full open
 * must decide: no file, not one SQLite can read, a schema other than this qvm's (a migration, or
 * a newer qvm), or any failure. No pragma beyond the busy timeout: it writes nothing, so it needs
 * none, and it never creates, migrates or backs up anything.
 */
export function peekDatabase(path: string): DatabaseSync | undefined {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path, { readOnly: true });
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const row = db.prepare("SELECT max(version) AS v FROM schema_version").get();
    if (row?.v === LATEST_VERSION) return db;
  } catch { /* the full open tells what is wrong */ }
  if (db?.isOpen) db.close();
  return undefined;
}

/**
 * Opens a database that cannot be written: plainly read-only when its -shm can be used, else
 * immutable (only when its write-ahead log is empty, so nothing committed is missed).
 */
function openReadOnly<T>(
  path: string,
  options: { failure: StateWriteError; make: Make<T> },
): T {
  const { failure } = options;
  for (const target of [path, immutableUri(path)]) {
    if (target !== path && walHasFrames(path)) break;
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(target, { readOnly: true });
      db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
      const version = currentVersion(db);
      if (version > LATEST_VERSION) {
        throw new QvmError(
          `state database ${path} has schema v${version}, newer than this qvm understands ` +
            `(v${LATEST_VERSION})`,
        );
      }
      if (version !== LATEST_VERSION) {
        throw new StateWriteError(
          `the state database ${path} (schema v${version}) must be upgraded to v${LATEST_VERSION} ` +
            `before qvm can read it, and it cannot be written: ${failure.message}`,
          { permission: failure.exitCode === ExitCode.permission },
        );
      }
      return options.make(db, failure);
    } catch (err) {
      if (db?.isOpen) db.close();
      if (err instanceof QvmError) throw err;
      const fault = translateFault(err, path);
      if (fault instanceof StateDamagedError) throw fault;
    }
  }
  throw failure;
}
