/**
 * The SQLite state store, the repository of VMs: one file, WAL, every id-or-name lookup as two
 * prepared, reused, indexed statements (primary key and unique name index, the one the argument's
 * shape points to first). Writes run in `BEGIN IMMEDIATE`; SQLite's failures surface as one line
 * (full disk, read-only data dir, damaged file). Opening the file safely is `open.ts`'s job,
 * bringing it to this schema `migrate.ts`'s.
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from "node:sqlite";
import { didYouMean, NotFoundError, StateWriteError, UsageError } from "../errors.ts";
import type { VmConfig } from "../config/mod.ts";
import { storedConfig } from "./stored_config.ts";
import { translateFault } from "./_faults.ts";
import { takeBackup } from "./backup.ts";
import { openDatabase, type OpenOptions, peekDatabase } from "./open.ts";

/** Statuses stored in the database; `paused`/`unresponsive` are derived on read, never stored. */
export type StoredStatus = "created" | "starting" | "running" | "stopping" | "stopped" | "failed";

/** One VM as the database knows it. */
export interface VmRecord {
  id: string;
  name: string;
  configPath: string | null;
  config: VmConfig;
  status: StoredStatus;
  pid: number | null;
  qmpSocketPath: string | null;
  createdAt: string;
  updatedAt: string;
  /** How the VM last ended (e.g. `guest-shutdown`, `crashed`, `stop:acpi`), null if never. */
  stopReason: string | null;
  /** Files qvm itself created for this VM (disks), the only ones `rm --delete-storage` removes. */
  createdFiles: string[];
  /**
   * When the process at `pid` started (clock ticks since boot, from /proc), read when qvm
   * verified it as the VM's QEMU; null when unknown (a pid recorded by an older qvm).
   */
  pidStart: number | null;
}

/** The few columns a listing needs; the config is not parsed. */
export type VmBrief = Pick<VmRecord, "id" | "name" | "status" | "pid" | "stopReason" | "pidStart">;

/** Fields a status change may set alongside the status. */
export interface StatusFields {
  /** The VM's QEMU pid; setting it sets `pidStart` too (null unless given). */
  pid?: number | null;
  /** The start time of `pid` (see `VmRecord.pidStart`); only with `pid`. */
  pidStart?: number | null;
  qmpSocketPath?: string | null;
  stopReason?: string | null;
}

/** What `insert` needs; `id` defaults to a new random UUID. */
export interface NewVm {
  id?: string;
  name: string;
  configPath?: string | null;
  config: VmConfig;
  /** Files qvm already made for it (a clone's copies of disks). */
  createdFiles?: string[];
}

/**
 * The UPDATE of a status change that sets `fields` too, by `key`. It names only the columns it
 * changes: a column in the SET list has its index entries rewritten even when its value stays,
 * so a status-only change that named `pid` would rewrite the pid index every time (measured at
 * 100,000 VMs: ~1.6x the cost of naming only `status`).
 * Parameters: status, then each field given (pid and pidStart, qmpSocketPath, stopReason order),
 * updated_at.
 */
export function statusSql(fields: StatusFields, key: "id" | "name"): string {
  const sets = ["status = ?"];
  if ("pid" in fields) sets.push("pid = ?", "pid_start = ?");
  if ("qmpSocketPath" in fields) sets.push("qmp_socket_path = ?");
  if ("stopReason" in fields) sets.push("stop_reason = ?");
  sets.push("updated_at = ?");
  return `UPDATE vm_instances SET ${sets.join(", ")} WHERE ${key} = ?`;
}

/** Every column of a row, in the order `byId` and `byName` return them (as arrays). */
const ROW_COLUMNS = [
  "id",
  "name",
  "config_path",
  "config_data",
  "status",
  "pid",
  "qmp_socket_path",
  "created_at",
  "updated_at",
  "stop_reason",
  "created_files",
  "pid_start",
] as const;

/** The fields `statusSql` may set, in its parameter order. */
const STATUS_FIELDS = ["pid", "qmpSocketPath", "stopReason"] as const;
const ALL_STATUS_FIELDS: StatusFields = { pid: null, qmpSocketPath: null, stopReason: null };
const SET_CONFIG =
  "UPDATE vm_instances SET config_data = ?, config_path = ?, name = ?, updated_at = ?";

/** A row that claims a process: the rows `ls` checks (the condition of index `idx_vm_live`). */
const LIVE = "(pid IS NOT NULL OR status IN ('starting', 'running', 'stopping'))";

/**
 * The whole `ls --json` output, one VM per line, sorted by name, as bytes (a BLOB, so it goes to
 * stdout as SQLite built it, never through a JavaScript string): at 10,000 VMs the
 * indented form cost ~2 ms more to build, and decoding and re-encoding it ~2 ms more again.
 */
function listJsonSql(status: string, pid: string, reason: string): string {
  // The separator carries each line's indent, so no row pays for a concatenation of its own.
  return `SELECT CAST(coalesce('[\n  ' || group_concat(json_object(
      'id', id, 'name', name, 'status', ${status}, 'pid', ${pid}, 'stop_reason', ${reason}),
      ',\n  ') || '\n]', '[]') || char(10) AS BLOB)
    FROM (SELECT id, name, status, pid, stop_reason FROM vm_instances ORDER BY name)`;
}

/**
 * Every statement the store prepares, once (a status change uses `statusSql`'s form for the
 * fields it sets; `statusById`/`statusByName` are the form that sets them all). Lookups come in
 * pairs, by id (primary key) and by name (unique index); tests check that each plan is a SEARCH.
 */
export const SQL = {
  byId: `SELECT ${ROW_COLUMNS.join(", ")} FROM vm_instances WHERE id = ?`,
  byName: `SELECT ${ROW_COLUMNS.join(", ")} FROM vm_instances WHERE name = ?`,
  all: "SELECT * FROM vm_instances ORDER BY name",
  allBrief: "SELECT id, name, status, pid, stop_reason, pid_start FROM vm_instances ORDER BY name",
  /**
   * The VMs that claim a process, in no order: read from the partial index `idx_vm_live`, not a
   * scan (an ORDER BY would make SQLite walk the name index over every VM instead).
   */
  live: `SELECT id, name, status, pid, stop_reason AS stopReason, pid_start AS pidStart
    FROM vm_instances WHERE ${LIVE}`,
  /** The token every change of a VM renews (schema v4's trigger). */
  token: "SELECT token FROM vm_generation",
  /** Every VM as `ls --json` prints it, built by SQLite (see `listJson`). */
  allJson: listJsonSql("status", "NULL", "stop_reason"),
  /**
   * `allJson` with the status, pid and stop reason of the VMs that claim a process taken from ?1
   * (by id).
   */
  allJsonObserved: listJsonSql(
    `CASE WHEN ${LIVE} THEN coalesce(?1 -> id ->> 'status', status) ELSE status END`,
    `CASE WHEN ${LIVE} THEN ?1 -> id ->> 'pid' END`,
    `CASE WHEN ${LIVE} THEN ?1 -> id ->> 'stop_reason' ELSE stop_reason END`,
  ),
  allByStatus: "SELECT * FROM vm_instances WHERE status = ? ORDER BY name",
  insert: `INSERT INTO vm_instances (id, name, config_path, config_data, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?)`,
  statusById: statusSql(ALL_STATUS_FIELDS, "id"),
  statusByName: statusSql(ALL_STATUS_FIELDS, "name"),
  configById: `${SET_CONFIG} WHERE id = ?`,
  configByName: `${SET_CONFIG} WHERE name = ?`,
  deleteById: "DELETE FROM vm_instances WHERE id = ?",
  deleteByName: "DELETE FROM vm_instances WHERE name = ?",
  addFileById: `UPDATE vm_instances SET created_files = json_insert(created_files, '$[#]', ?),
    updated_at = ? WHERE id = ?`,
  forgetFileById: `UPDATE vm_instances SET created_files =
    (SELECT json_group_array(value) FROM json_each(created_files) WHERE value != ?1),
    updated_at = ?2 WHERE id = ?3`,
} as const;

/** A VM id's shape (a UUID, any case); no VM name may have it (see config/name.ts). */
const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** What `ls --json` shows of a VM it checked: its observed status, its pid and stop reason. */
export interface ObservedRow {
  status: string;
  pid: number | null;
  stop_reason: string | null;
}

/** The parameter the observed `ls --json` statement takes: `observed` as JSON, or none. */
export function observedParam(observed: ReadonlyMap<string, ObservedRow>): string | undefined {
  if (observed.size === 0) return undefined;
  // JSON.stringify(Object.fromEntries(observed)), written out: no object of every live VM is
  // built (about half the time at 500 VMs, in a one-off measurement).
  let json = "";
  for (const [id, row] of observed) {
    json += `${json === "" ? "{" : ","}${JSON.stringify(id)}:{"status":${
      JSON.stringify(row.status)
    },"pid":${JSON.stringify(row.pid)},"stop_reason":${JSON.stringify(row.stop_reason)}}`;
  }
  return `${json}}`;
}

/** A `vm_instances` row as SQLite returns it. */
export interface Row {
  id: string;
  name: string;
  config_path: string | null;
  config_data: string;
  status: StoredStatus;
  pid: number | null;
  qmp_socket_path: string | null;
  created_at: string;
  updated_at: string;
  stop_reason: string | null;
  created_files: string;
  pid_start: number | null;
}

/**
 * A row read as an array (`ROW_COLUMNS` order) as a VmRecord. Lookups read rows as arrays: SQLite's
 * binding then builds no row object for `toRecord` to copy (get by id ~9.3 → ~7.5 µs, paired).
 */
export function arrayToRecord(values: readonly unknown[]): VmRecord {
  const created = values[10] as string;
  return {
    id: values[0] as string,
    name: values[1] as string,
    configPath: values[2] as string | null,
    config: storedConfig(JSON.parse(values[3] as string), values[1] as string),
    status: values[4] as StoredStatus,
    pid: values[5] as number | null,
    qmpSocketPath: values[6] as string | null,
    createdAt: values[7] as string,
    updatedAt: values[8] as string,
    stopReason: values[9] as string | null,
    createdFiles: created === "[]" ? [] : JSON.parse(created),
    pidStart: values[11] as number | null,
  };
}

/** A row read as an array, as the object `toRecord` takes. */
function arrayToRow(values: readonly unknown[]): Row {
  const row: Record<string, unknown> = {};
  ROW_COLUMNS.forEach((column, i) => (row[column] = values[i]));
  return row as unknown as Row;
}

/** A row as a VmRecord, both JSON columns parsed (what every read returns). */
export function toRecord(row: Row): VmRecord {
  return {
    id: row.id,
    name: row.name,
    configPath: row.config_path,
    config: storedConfig(JSON.parse(row.config_data), row.name),
    status: row.status,
    pid: row.pid,
    qmpSocketPath: row.qmp_socket_path,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    stopReason: row.stop_reason,
    createdFiles: JSON.parse(row.created_files),
    pidStart: row.pid_start,
  };
}

/** A status change kept in memory by a read-only command whose database cannot be written. */
type StatusOverlay = Partial<
  Pick<Row, "status" | "pid" | "pid_start" | "qmp_socket_path" | "stop_reason">
>;

function isUniqueViolation(err: unknown): boolean {
  return err instanceof Error && /UNIQUE constraint failed/.test(err.message);
}

/** The state store; open one per process with `StateStore.open` and close it when done. */
export class StateStore {
  readonly path: string;
  readonly db: DatabaseSync;
  /** Why this store cannot write (it was opened read-only); undefined when it can. */
  readonly cannotWrite?: StateWriteError;
  #readOnlyCommand: boolean;
  #overlay?: Map<string, StatusOverlay>;
  /** A VM was added, changed or removed: the database is backed up on close. */
  #changed = false;
  /**
   * The statements run so far, each prepared once, on first use: a command runs few of them
   * (preparing all fourteen up front cost `status` ~0.2 ms).
   */
  #statements = new Map<string, StatementSync>();
  /** Status UPDATEs by id and by name, per set of fields given, prepared on first use. */
  #status: ([StatementSync, StatementSync] | undefined)[] = [];

  private constructor(
    path: string,
    db: DatabaseSync,
    options: OpenOptions & { cannotWrite?: StateWriteError },
  ) {
    this.path = path;
    this.db = db;
    this.cannotWrite = options.cannotWrite;
    this.#readOnlyCommand = options.readOnly === true;
  }

  /** `sql` prepared (once); `arrays`: it returns rows as arrays. */
  #prepared(sql: string, arrays = false): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#read(() => this.db.prepare(sql));
      if (arrays) statement.setReturnArrays(true);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  get #byId(): StatementSync {
    return this.#prepared(SQL.byId, true);
  }
  get #byName(): StatementSync {
    return this.#prepared(SQL.byName, true);
  }
  get #all(): StatementSync {
    return this.#prepared(SQL.all);
  }
  get #allByStatus(): StatementSync {
    return this.#prepared(SQL.allByStatus);
  }
  get #allBrief(): StatementSync {
    return this.#prepared(SQL.allBrief, true);
  }
  get #insert(): StatementSync {
    return this.#prepared(SQL.insert);
  }
  get #configById(): StatementSync {
    return this.#prepared(SQL.configById);
  }
  get #configByName(): StatementSync {
    return this.#prepared(SQL.configByName);
  }
  get #deleteById(): StatementSync {
    return this.#prepared(SQL.deleteById);
  }
  get #deleteByName(): StatementSync {
    return this.#prepared(SQL.deleteByName);
  }
  get #addFileById(): StatementSync {
    return this.#prepared(SQL.addFileById);
  }
  get #begin(): StatementSync {
    return this.#prepared("BEGIN IMMEDIATE");
  }
  get #commit(): StatementSync {
    return this.#prepared("COMMIT");
  }
  get #rollback(): StatementSync {
    return this.#prepared("ROLLBACK");
  }

  /**
   * Opens (creating if absent) the database at `path`, sets the pragmas and applies pending
   * migrations, backing the file up first. A file that is not SQLite is refused untouched. When
   * the data dir is full or read-only the database is opened read-only: reads work, and every
   * write throws `cannotWrite` (a read-only command keeps status corrections in memory).
   */
  static open(path: string, options: OpenOptions = {}): StateStore {
    return openDatabase(path, {
      ...options,
      make: (db, cannotWrite) => new StateStore(path, db, { ...options, cannotWrite }),
    });
  }

  /**
   * The database at `path` opened only to read, or undefined when `open` must handle it (see
   * `peekDatabase`): for the quick routes, which look and never write (a write would fail).
   */
  static peek(path: string): StateStore | undefined {
    const db = peekDatabase(path);
    return db && new StateStore(path, db, { readOnly: true });
  }

  /**
   * Runs `fn` in a `BEGIN IMMEDIATE` transaction: all of it commits, or none of it. SQLite's
   * failures (full disk, I/O error, read-only file) come out as one-line StateWriteErrors.
   */
  transaction<T>(fn: () => T): T {
    if (this.cannotWrite) throw this.cannotWrite;
    try {
      this.#begin.run();
    } catch (err) {
      throw translateFault(err, this.path);
    }
    try {
      const result = fn();
      this.#commit.run();
      return result;
    } catch (err) {
      // SQLite rolls back by itself on some failures (a full disk, an I/O error): never roll
      // back a transaction that is no longer there.
      if (this.db.isTransaction) {
        try {
          this.#rollback.run();
        } catch { /* the original failure is what matters */ }
      }
      throw translateFault(err, this.path);
    }
  }

  /** Runs a read; SQLite's failures (a damaged file, an I/O error) come out as one line. */
  #read<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw translateFault(err, this.path);
    }
  }

  /** `row` with the status changes this run kept in memory (a read-only command only). */
  #overlaid<T extends { id: string }>(row: T): T {
    const change = this.#overlay?.get(row.id);
    return change ? { ...row, ...change } : row;
  }

  /** `#overlaid` for a brief row, whose stop reason is named `stopReason`. */
  #overlaidBrief(row: VmBrief): VmBrief {
    const change = this.#overlay?.get(row.id);
    if (!change) return row;
    const { stop_reason, pid_start, ...rest } = change;
    const brief = { ...row, ...rest } as VmBrief;
    if (pid_start !== undefined) brief.pidStart = pid_start;
    return stop_reason === undefined ? brief : { ...brief, stopReason: stop_reason };
  }

  /**
   * The VM with this id or name, else undefined. An argument shaped like a UUID is looked up as
   * an id first, anything else as a name first: a name never looks like a UUID, so a name no
   * longer pays for an id search that misses (get by name at 100,000 VMs ~9 → ~6.6 µs, paired).
   */
  get(idOrName: string): VmRecord | undefined {
    const row = this.#row(idOrName);
    if (!row) return undefined;
    return this.#overlay ? toRecord(this.#overlaid(arrayToRow(row))) : arrayToRecord(row);
  }

  /** The row of the VM with this id or name, as an array (`ROW_COLUMNS` order), else undefined. */
  #row(idOrName: string): unknown[] | undefined {
    const [first, second] = lookupOrder(idOrName, this.#byId, this.#byName);
    return this.#read(() => (first.get(idOrName) ?? second.get(idOrName)) as unknown[] | undefined);
  }

  /** The VM with this id or name as `listBrief` gives it (its config not parsed), else undefined. */
  brief(idOrName: string): VmBrief | undefined {
    const row = this.#row(idOrName);
    if (!row) return undefined;
    const brief = {
      id: row[0],
      name: row[1],
      status: row[4],
      pid: row[5],
      stopReason: row[9],
      pidStart: row[11],
    } as VmBrief;
    return this.#overlay ? this.#overlaidBrief(brief) : brief;
  }

  /** Like `get`, but a missing VM is a NotFoundError (exit 3). */
  require(idOrName: string): VmRecord {
    const vm = this.get(idOrName);
    if (!vm) {
      throw new NotFoundError(`no VM with id or name '${idOrName}'${this.#nameHint(idOrName)}`);
    }
    return vm;
  }

  /**
   * `: did you mean 'web1'?` for a name that is a typo of a VM's, else "". Reads every name: a
   * scan, paid only when a lookup has already missed.
   */
  #nameHint(idOrName: string): string {
    if (UUID_SHAPE.test(idOrName)) return "";
    try {
      const names = this.db.prepare("SELECT name FROM vm_instances");
      names.setReturnArrays(true);
      return didYouMean(idOrName, (names.all() as unknown as [string][]).map((row) => row[0]));
    } catch {
      return ""; // a hint is never worth a second failure
    }
  }

  /** Every VM, by name; only those with `status` when given. */
  list(options?: { status?: string }): VmRecord[] {
    if (this.#overlay) {
      const all = (this.#read(() => this.#all.all()) as unknown as Row[])
        .map((row) => this.#overlaid(row));
      const wanted = options?.status;
      return all.filter((row) => wanted === undefined || row.status === wanted).map(toRecord);
    }
    const rows = this.#read(() =>
      options?.status === undefined ? this.#all.all() : this.#allByStatus.all(options.status)
    );
    return (rows as unknown as Row[]).map(toRecord);
  }

  /**
   * Every VM's id, name, status, pid and stop reason, by name: what `ls` needs, without parsing
   * configs.
   */
  listBrief(): VmBrief[] {
    // Read as arrays: objects built here cost less than SQLite's binding building them (at 10,000
    // VMs ~7 → ~5 ms, at 100,000 ~120 → ~60 ms).
    const rows = (this.#read(() => this.#allBrief.all()) as unknown as VmBrief[keyof VmBrief][][])
      .map((v) =>
        ({
          id: v[0],
          name: v[1],
          status: v[2],
          pid: v[3],
          stopReason: v[4],
          pidStart: v[5],
        }) as VmBrief
      );
    return this.#overlay ? rows.map((row) => this.#overlaidBrief(row)) : rows;
  }

  /** The VMs that claim a process (a pid, or a live stored status), in no order: what `ls` checks. */
  listLive(): VmBrief[] {
    const statement = this.#prepared(SQL.live);
    const rows = this.#read(() => statement.all()) as unknown as VmBrief[];
    return this.#overlay ? rows.map((row) => this.#overlaidBrief(row)) : rows;
  }

  /**
   * Every VM as `ls --json` prints it (one `{id, name, status, pid, stop_reason}` per line, by
   * name, ending in a newline), built by SQLite as bytes. `observed` gives the status, pid and
   * stop reason shown for the VMs `listLive` returned (after checking them); every other VM
   * claims no process, so it shows its stored status and reason and pid null.
   */
  listJson(observed: ReadonlyMap<string, ObservedRow>): Uint8Array {
    return this.#buildJson(observedParam(observed));
  }

  /**
   * `listJson`'s output and the database's token (see `token`), read in one snapshot: the output
   * is the one of that token. `param` is `observedParam` of what `listJson` would take.
   */
  snapshotJson(param: string | undefined): { token: string; json: Uint8Array } {
    return this.#read(() => {
      this.db.exec("BEGIN");
      try {
        return { token: this.token(), json: this.#buildJson(param) };
      } finally {
        this.db.exec("COMMIT");
      }
    });
  }

  #buildJson(param: string | undefined): Uint8Array {
    const sql = param === undefined ? SQL.allJson : SQL.allJsonObserved;
    const statement = this.#prepared(sql, true);
    const params = param === undefined ? [] : [param];
    return (this.#read(() => statement.get(...params)) as unknown as [Uint8Array])[0];
  }

  /**
   * A token (hex) that every change of a VM renews, in the same transaction, whoever writes
   * (schema v4's triggers): while it is the same, no VM was added, changed or removed.
   */
  token(): string {
    const statement = this.#prepared(SQL.token, true);
    const [token] = this.#read(() => statement.get()) as unknown as [Uint8Array];
    let hex = "";
    for (const byte of token) hex += byte.toString(16).padStart(2, "0");
    return hex;
  }

  /** Adds a VM; a taken name is a UsageError and writes nothing. */
  insert(vm: NewVm): VmRecord {
    const id = vm.id ?? crypto.randomUUID();
    const now = new Date().toISOString();
    try {
      this.transaction(() => {
        this.#insert.run(id, vm.name, vm.configPath ?? null, JSON.stringify(vm.config), now, now);
        for (const file of vm.createdFiles ?? []) this.#addFileById.run(file, now, id);
      });
      this.#changed = true;
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new UsageError(`a VM named '${vm.name}' already exists`);
      }
      throw err;
    }
    return this.require(id);
  }

  /**
   * Sets a VM's status (and optionally pid, QMP socket, stop reason); false if no such VM. In a
   * read-only command whose database cannot be written, the change is kept in memory for this run.
   */
  updateStatus(idOrName: string, status: StoredStatus, fields: StatusFields = {}): boolean {
    if (this.#readOnlyCommand) {
      try {
        return this.#setStatus(idOrName, status, fields);
      } catch (err) {
        if (!(err instanceof StateWriteError)) throw err;
        return this.#rememberStatus(idOrName, status, fields);
      }
    }
    return this.#setStatus(idOrName, status, fields);
  }

  #rememberStatus(idOrName: string, status: StoredStatus, fields: StatusFields): boolean {
    const vm = this.get(idOrName);
    if (!vm) return false;
    const change: StatusOverlay = { ...this.#overlay?.get(vm.id), status };
    if ("pid" in fields) {
      change.pid = fields.pid ?? null;
      change.pid_start = fields.pidStart ?? null;
    }
    if ("qmpSocketPath" in fields) change.qmp_socket_path = fields.qmpSocketPath ?? null;
    if ("stopReason" in fields) change.stop_reason = fields.stopReason ?? null;
    (this.#overlay ??= new Map()).set(vm.id, change);
    return true;
  }

  #setStatus(idOrName: string, status: StoredStatus, fields: StatusFields): boolean {
    const params: SQLInputValue[] = [status];
    let mask = 0;
    STATUS_FIELDS.forEach((key, bit) => {
      if (!(key in fields)) return;
      mask |= 1 << bit;
      params.push(fields[key] ?? null);
      if (key === "pid") params.push(fields.pidStart ?? null);
    });
    params.push(new Date().toISOString());
    const [byId, byName] = this.#status[mask] ??= this.#read(() => [
      this.db.prepare(statusSql(fields, "id")),
      this.db.prepare(statusSql(fields, "name")),
    ]);
    return this.#writeByIdOrName(byId, byName, params, idOrName);
  }

  /** Replaces a VM's config (and its name, taken from the config); false if no such VM. */
  updateConfig(idOrName: string, config: VmConfig, options?: { configPath?: string | null }) {
    const current = this.require(idOrName);
    const name = config.name ?? current.name;
    const params: SQLInputValue[] = [
      JSON.stringify(config),
      options?.configPath === undefined ? current.configPath : options.configPath,
      name,
      new Date().toISOString(),
    ];
    try {
      const changed = this.#writeByIdOrName(
        this.#configById,
        this.#configByName,
        params,
        current.id,
      );
      this.#changed ||= changed;
      return changed;
    } catch (err) {
      if (isUniqueViolation(err)) throw new UsageError(`a VM named '${name}' already exists`);
      throw err;
    }
  }

  /** Deletes a VM's row; false if no such VM. */
  remove(idOrName: string): boolean {
    const removed = this.#writeByIdOrName(this.#deleteById, this.#deleteByName, [], idOrName);
    this.#changed ||= removed;
    return removed;
  }

  /** Records a file qvm created for the VM, so only such files are ever deleted with it. */
  addCreatedFile(id: string, file: string): void {
    this.transaction(() => this.#addFileById.run(file, new Date().toISOString(), id));
    this.#changed = true;
  }

  /**
   * Records `files` (those not recorded yet) as files qvm creates for the VM, in one transaction,
   * before it makes them: a kill while they are made leaves nothing qvm made unrecorded.
   */
  recordCreating(id: string, files: readonly string[]): void {
    this.transaction(() => {
      const known = new Set(this.require(id).createdFiles);
      for (const file of files) {
        if (!known.has(file)) this.#addFileById.run(file, new Date().toISOString(), id);
        known.add(file);
      }
    });
    this.#changed = true;
  }

  /** Forgets a recorded file (one qvm did not make after all, or a temporary one now gone). */
  forgetCreatedFile(id: string, file: string): void {
    const forget = this.#prepared(SQL.forgetFileById);
    this.transaction(() => forget.run(file, new Date().toISOString(), id));
    this.#changed = true;
  }

  /**
   * Closes the database, first refreshing its backup if this run added, changed or removed a VM
   * (best effort: a backup that cannot be written leaves the older ones; doctor reports their age).
   */
  close(): void {
    if (!this.db.isOpen) return;
    if (this.#changed && this.path !== ":memory:") {
      this.#changed = false;
      try {
        takeBackup(this.db, this.path);
      } catch { /* the command itself succeeded; doctor shows how old the backups are */ }
    }
    this.db.close();
  }

  #writeByIdOrName(
    byId: StatementSync,
    byName: StatementSync,
    params: SQLInputValue[],
    idOrName: string,
  ): boolean {
    const [first, second] = lookupOrder(idOrName, byId, byName);
    return this.transaction(() => {
      if (first.run(...params, idOrName).changes > 0) return true;
      return second.run(...params, idOrName).changes > 0;
    });
  }
}

/** `[byId, byName]` for an argument shaped like a UUID, else `[byName, byId]`: both are tried. */
function lookupOrder<T>(idOrName: string, byId: T, byName: T): [T, T] {
  return UUID_SHAPE.test(idOrName) ? [byId, byName] : [byName, byId];
}
