/**
 * Shared by the state benchmarks (`state_bench.ts`, `table.ts`): a real SQLite file populated with N
 * VMs through the real `StateStore`, the three ways of finding a VM by id or name that we compare,
 * and one measured operation per (operation, variant) that cycles through random targets.
 *
 * - `ours`: the `StateStore` methods themselves (two prepared, reused statements: by id and by
 *   name, a UUID-shaped argument tried as an id first, any other as a name first).
 * - `or`: the same steps, with every id-or-name statement as one `WHERE id = ? OR name = ?`.
 * - `scan`: the same steps, with `WHERE ? IN (id, name)`, which SQLite can only answer by a scan.
 */
import {
  databasePath,
  SQL,
  StateStore,
  type StoredStatus,
  type VmRecord,
} from "../src/state/mod.ts";
import { arrayToRecord, statusSql } from "../src/state/store.ts";
import type { VmConfig } from "../src/config/mod.ts";

/** The sizes the seed's tables use, plus 100,000. */
export const DEFAULT_SIZES: readonly number[] = [10, 100, 1_000, 10_000, 100_000];

/** The operations of the seed's results table, in its order. */
export const OPERATIONS = [
  "get by id",
  "get by name",
  "update status",
  "update config",
  "remove",
] as const;

/** One of `OPERATIONS`. */
export type Operation = typeof OPERATIONS[number];

/** The three lookup variants, ours first (it is the baseline of every ratio). */
export const VARIANTS = ["ours", "or", "scan"] as const;

/** One of `VARIANTS`. */
export type Variant = typeof VARIANTS[number];

/** How the `or` and `scan` variants replace the store's `WHERE id = ?`, and how many `?` they bind. */
const FORMS = {
  or: { where: "WHERE id = ? OR name = ?", arity: 2 },
  scan: { where: "WHERE ? IN (id, name)", arity: 1 },
} as const;

/** What one measured `remove` does, in every variant; the report quotes it. */
export const REMOVE_METHOD =
  "remove by name, then re-insert the same row (same id, name and config) with the store's own " +
  "prepared INSERT in its own `BEGIN IMMEDIATE` transaction, so the population stays N; the " +
  "re-insert is identical in all three variants, so it adds the same cost to each";

/** Which key the write operations use; the report quotes it. */
export const WRITE_KEY_METHOD =
  "update status, update config and remove name their VM by name (ours tries a name that is not " +
  "UUID-shaped by the name index first, so its id lookup no longer misses first)";

/** A database of `size` VMs and the targets the measured operations cycle through. */
export interface Population {
  readonly size: number;
  readonly store: StateStore;
  readonly ids: readonly string[];
  readonly names: readonly string[];
  /** Every index 0..size-1 once, shuffled (seeded): the order in which operations visit VMs. */
  readonly order: Uint32Array;
  /** The `created_at`/`updated_at` every row was inserted with (re-inserts reuse it). */
  readonly createdAt: string;
  /** The temp dir holding the database, when the population created it (removed on dispose). */
  readonly tempDir?: string;
}

/** The sizes to measure: `$QVM_BENCH_SIZES` (e.g. `10,100`) when set, else `fallback`. */
export function benchSizes(fallback: readonly number[] = DEFAULT_SIZES): number[] {
  const text = Deno.env.get("QVM_BENCH_SIZES")?.trim();
  if (!text) return [...fallback];
  const sizes = text.split(",").map((s) => Number(s.trim().replaceAll("_", "")));
  if (sizes.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`QVM_BENCH_SIZES must be positive integers separated by commas, not '${text}'`);
  }
  return sizes;
}

/** The name of the i-th VM: `vm-000123`. */
export function vmName(index: number): string {
  return `vm-${String(index).padStart(6, "0")}`;
}

/** A small, realistic config (one qcow2 disk) for the VM called `name`. */
export function vmConfig(name: string, memory = "1G"): VmConfig {
  return {
    name,
    memory,
    cpu: 2,
    arguments: [],
    args: [],
    storage: [{ name: "hdd", type: "qcow2", size: "10G", interface: "virtio" }],
  };
}

/**
 * Creates a database of `size` VMs with the real `StateStore.open` (our pragmas and schema) and
 * fills it in one transaction of prepared INSERTs, then checkpoints the WAL. `dataDir` (kept on dispose) holds the database
 * when given; otherwise a new temp dir does, removed by `disposePopulation`.
 */
export function createPopulation(size: number, options?: { dataDir?: string }): Population {
  const tempDir = options?.dataDir ? undefined : Deno.makeTempDirSync({ prefix: "qvm-bench-" });
  const dir = options?.dataDir ?? tempDir!;
  const store = StateStore.open(databasePath(dir));
  const createdAt = new Date().toISOString();
  const { ids, names } = fill(store, { size, createdAt });
  store.db.exec("PRAGMA wal_checkpoint(TRUNCATE)"); // start every size from a folded-in WAL
  return { size, store, ids, names, order: shuffledIndices(size), createdAt, tempDir };
}

/** Closes the population's database and removes its temp dir, if it made one. */
export function disposePopulation(population: Population): void {
  population.store.close();
  if (population.tempDir) Deno.removeSync(population.tempDir, { recursive: true });
}

function fill(store: StateStore, options: { size: number; createdAt: string }) {
  const insert = store.db.prepare(SQL.insert);
  const ids: string[] = [];
  const names: string[] = [];
  const { size, createdAt } = options;
  store.transaction(() => {
    for (let i = 0; i < size; i++) {
      const id = crypto.randomUUID();
      const name = vmName(i);
      insert.run(id, name, null, JSON.stringify(vmConfig(name)), createdAt, createdAt);
      ids.push(id);
      names.push(name);
    }
  });
  return { ids, names };
}

/** 0..size-1 in a seeded random order (mulberry32), the same for every variant and run. */
function shuffledIndices(size: number): Uint32Array {
  const order = new Uint32Array(size);
  for (let i = 0; i < size; i++) order[i] = i;
  let seed = 0x9e3779b9 ^ size;
  for (let i = size - 1; i > 0; i--) {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    const j = Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** `sql` (a store statement ending in `WHERE id = ?`) with that clause replaced by `where`. */
export function rewhere(sql: string, where: string): string {
  const tail = "WHERE id = ?";
  if (!sql.endsWith(tail)) throw new Error(`expected a statement ending in '${tail}': ${sql}`);
  return sql.slice(0, -tail.length) + where;
}

/** The statements a variant runs for each kind of access, for `EXPLAIN QUERY PLAN`. */
export function variantStatements(variant: Variant): Record<string, string[]> {
  const pair = (byId: string, byName: string) =>
    variant === "ours" ? [byId, byName] : [rewhere(byId, FORMS[variant].where)];
  return {
    "get (SELECT)": pair(SQL.byId, SQL.byName),
    "update status (UPDATE)": pair(statusSql({}, "id"), statusSql({}, "name")),
    "update config (UPDATE)": pair(SQL.configById, SQL.configByName),
    "remove (DELETE)": pair(SQL.deleteById, SQL.deleteByName),
  };
}

/**
 * `EXPLAIN QUERY PLAN` of `sql` as its detail lines, indented two spaces per nesting level
 * (e.g. `MULTI-INDEX OR` / `  INDEX 1` / `    SEARCH vm_instances USING INDEX ... (id=?)`).
 */
export function queryPlan(store: StateStore, sql: string): string[] {
  const rows = store.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as unknown as {
    id: number;
    parent: number;
    detail: string;
  }[];
  const depth = new Map<number, number>([[0, -1]]);
  return rows.map((row) => {
    const level = (depth.get(row.parent) ?? -1) + 1;
    depth.set(row.id, level);
    return "  ".repeat(level) + row.detail;
  });
}

/** What every variant can do to a VM named by id or name; `ours` is the `StateStore` itself. */
interface Access {
  get(key: string): VmRecord | undefined;
  updateStatus(key: string, status: StoredStatus): boolean;
  updateConfig(key: string, config: VmConfig): boolean;
  remove(key: string): boolean;
}

function oursAccess(store: StateStore): Access {
  return {
    get: (key) => store.get(key),
    updateStatus: (key, status) => store.updateStatus(key, status),
    updateConfig: (key, config) => store.updateConfig(key, config),
    remove: (key) => store.remove(key),
  };
}

/**
 * The store's steps with one statement per access in place of its id/name pair: same SET lists
 * and parameters, same `BEGIN IMMEDIATE` transactions, same read-then-update-by-id for configs.
 */
function sqlAccess(store: StateStore, variant: "or" | "scan"): Access {
  const { where, arity } = FORMS[variant];
  const prepare = (sql: string) => store.db.prepare(rewhere(sql, where));
  const select = prepare(SQL.byId);
  select.setReturnArrays(true); // as ours reads rows
  const status = prepare(statusSql({}, "id")); // what ours runs for a status-only change
  const config = prepare(SQL.configById);
  const remove = prepare(SQL.deleteById);
  const keys = (key: string) => new Array<string>(arity).fill(key);
  const get = (key: string) => {
    const row = select.get(...keys(key)) as unknown[] | undefined;
    return row ? arrayToRecord(row) : undefined;
  };
  return {
    get,
    updateStatus(key, value) {
      const now = new Date().toISOString();
      const params = [value, now];
      return store.transaction(() => status.run(...params, ...keys(key)).changes > 0);
    },
    updateConfig(key, value) {
      const current = get(key);
      if (!current) throw new Error(`no VM '${key}'`);
      const now = new Date().toISOString();
      const params = [JSON.stringify(value), current.configPath, value.name ?? current.name, now];
      return store.transaction(() => config.run(...params, ...keys(current.id)).changes > 0);
    },
    remove: (key) => store.transaction(() => remove.run(...keys(key)).changes > 0),
  };
}

function accessFor(store: StateStore, variant: Variant): Access {
  return variant === "ours" ? oursAccess(store) : sqlAccess(store, variant);
}

/**
 * One call of the returned function performs `operation` once with `variant` on the next VM of
 * `population.order` (each returned function has its own cursor, so all variants visit the same
 * VMs in the same order). It throws if the VM was not found, so a broken variant cannot look fast.
 */
export function makeOperation(
  population: Population,
  options: { operation: Operation; variant: Variant },
): () => void {
  const { store, ids, names, order } = population;
  const access = accessFor(store, options.variant);
  let cursor = 0;
  const next = () => order[cursor++ % order.length];
  const check = (found: boolean, key: string) => {
    if (!found) throw new Error(`${options.variant} ${options.operation}: no VM '${key}'`);
  };
  switch (options.operation) {
    case "get by id":
      return () => {
        const key = ids[next()];
        check(access.get(key) !== undefined, key);
      };
    case "get by name":
      return () => {
        const key = names[next()];
        check(access.get(key) !== undefined, key);
      };
    case "update status":
      return () => {
        const key = names[next()];
        check(access.updateStatus(key, cursor % 2 ? "running" : "stopped"), key);
      };
    case "update config":
      return () => {
        const key = names[next()];
        check(access.updateConfig(key, vmConfig(key, cursor % 2 ? "2G" : "1G")), key);
      };
    case "remove":
      return removeThenReinsert(population, { access, next, check });
  }
}

function removeThenReinsert(
  population: Population,
  options: {
    access: Access;
    next: () => number;
    check: (found: boolean, key: string) => void;
  },
): () => void {
  const { store, ids, names, createdAt } = population;
  const insert = store.db.prepare(SQL.insert);
  return () => {
    const i = options.next();
    const name = names[i];
    options.check(options.access.remove(name), name);
    const config = JSON.stringify(vmConfig(name));
    store.transaction(() => insert.run(ids[i], name, null, config, createdAt, createdAt));
  };
}
