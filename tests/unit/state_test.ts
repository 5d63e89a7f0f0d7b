import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import {
  BACKUP_GENERATIONS,
  BACKUP_INTERVAL_MS,
  LATEST_VERSION,
  listBackups,
  readVms,
  SQL,
  StateStore,
} from "../../src/state/mod.ts";
import { takeBackup } from "../../src/state/backup.ts";
import { QvmError, StateWriteError, UsageError } from "../../src/errors.ts";
import type { VmConfig } from "../../src/config/mod.ts";
import { RUNTIME_KINDS, runtimeFile, type RuntimeKind } from "../../src/vm_files.ts";

const CONFIG: VmConfig = { memory: "1G", cpu: 2, arguments: [], args: [], storage: [] };

async function withStore(fn: (store: StateStore, dir: string) => void | Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "qvm-state-" });
  const store = StateStore.open(join(dir, "qvm.db"));
  try {
    await fn(store, dir);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function plan(db: DatabaseSync, sql: string): string[] {
  const params = (sql.match(/\?/g) ?? []).map(() => "x");
  return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[])
    .map((r) => r.detail);
}

Deno.test("a new database gets the latest schema, WAL and the documented pragmas", async () => {
  await withStore((store) => {
    const get = (sql: string) => Object.values(store.db.prepare(sql).get()!)[0];
    assert.equal(get("PRAGMA journal_mode"), "wal");
    assert.equal(get("PRAGMA synchronous"), 1);
    assert.equal(get("PRAGMA foreign_keys"), 1);
    assert.ok(Number(get("PRAGMA busy_timeout")) >= 5000);
    assert.equal(get("SELECT max(version) FROM schema_version"), LATEST_VERSION);
    const indexes =
      (store.db.prepare("PRAGMA index_list(vm_instances)").all() as { name: string }[])
        .map((r) => r.name);
    assert.ok(indexes.includes("idx_vm_live"));
    assert.ok(!indexes.includes("idx_vm_status") && !indexes.includes("idx_vm_pid"));
  });
});

Deno.test("ls finds the VMs to check through the partial index, not a scan", async () => {
  await withStore((store) => {
    assert.deepEqual(plan(store.db, SQL.live), ["SCAN vm_instances USING INDEX idx_vm_live"]);
  });
});

Deno.test("listJson is every VM's JSON with its stop reason, one per line by name, observed ones overridden", async () => {
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  const lines = (list: unknown[]) =>
    `[\n${list.map((vm) => `  ${JSON.stringify(vm)}`).join(",\n")}\n]\n`;
  await withStore((store) => {
    assert.equal(text(store.listJson(new Map())), "[]\n");
    const a = store.insert({ name: "b-vm", config: CONFIG });
    const b = store.insert({ name: "a-vm", config: CONFIG });
    const c = store.insert({ name: "c-vm", config: CONFIG });
    store.updateStatus(a.id, "running", { pid: 4242 });
    store.updateStatus(c.id, "stopped", { pid: null, stopReason: "guest shutdown" });
    assert.deepEqual(store.listLive().map((vm) => vm.name), ["b-vm"]);
    const expected = [
      { id: b.id, name: "a-vm", status: "created", pid: null, stop_reason: null },
      { id: a.id, name: "b-vm", status: "paused", pid: 4242, stop_reason: null },
      { id: c.id, name: "c-vm", status: "stopped", pid: null, stop_reason: "guest shutdown" },
    ];
    // Only a VM that claims a process takes its status from what was observed.
    const observed = new Map([
      [a.id, { status: "paused", pid: 4242, stop_reason: null }],
      [c.id, { status: "running", pid: 1, stop_reason: null }],
    ]);
    assert.equal(text(store.listJson(observed)), lines(expected));
    assert.deepEqual(JSON.parse(text(store.listJson(observed))), expected);
    store.updateStatus(a.id, "stopped", { pid: null, stopReason: "crashed or killed (SIGKILL)" });
    expected[1] = {
      ...expected[1],
      status: "stopped",
      pid: null,
      stop_reason: "crashed or killed (SIGKILL)",
    };
    assert.equal(text(store.listJson(new Map())), lines(expected));
    assert.deepEqual(
      store.listBrief().map((vm) => vm.stopReason),
      expected.map((vm) => vm.stop_reason),
    );
  });
});

Deno.test("every change of a VM renews the token, whoever writes it; reads leave it; a snapshot's output is its token's", async () => {
  await withStore((store, dir) => {
    const seen = new Set([store.token()]);
    const renewed = (what: string) => {
      const token = store.token();
      assert.ok(!seen.has(token), `${what} renews the token`);
      seen.add(token);
    };
    const vm = store.insert({ name: "a", config: CONFIG });
    renewed("insert");
    store.updateStatus(vm.id, "running", { pid: 4242, pidStart: 7 });
    renewed("a status change");
    assert.equal(store.require(vm.id).pidStart, 7);
    store.updateStatus(vm.id, "stopped", { pid: null });
    renewed("a stop");
    assert.equal(store.require(vm.id).pidStart, null, "a pid cleared clears its start time");
    store.updateConfig(vm.id, { ...CONFIG, name: "b" });
    renewed("a rename");
    store.addCreatedFile(vm.id, "/d/x.qcow2");
    renewed("a created file");
    const before = store.token();
    store.list();
    store.listBrief();
    store.listJson(new Map());
    assert.equal(store.token(), before, "reads keep it");
    const other = new DatabaseSync(join(dir, "qvm.db"));
    other.exec("UPDATE vm_instances SET stop_reason = 'by hand'");
    other.close();
    renewed("another program's write");
    const { token, json } = store.snapshotJson(undefined);
    assert.equal(token, store.token());
    assert.match(new TextDecoder().decode(json), /"stop_reason":"by hand"/);
    store.remove(vm.id);
    renewed("a removal");
  });
});

Deno.test("every id-or-name lookup statement is an index SEARCH, never a SCAN", async () => {
  await withStore((store) => {
    for (
      const key of [
        "byId",
        "byName",
        "statusById",
        "statusByName",
        "configById",
        "configByName",
        "deleteById",
        "deleteByName",
        "addFileById",
      ] as const
    ) {
      const details = plan(store.db, SQL[key]);
      assert.ok(details.some((d) => d.startsWith("SEARCH")), `${key}: ${details}`);
      assert.ok(!details.some((d) => d.startsWith("SCAN")), `${key}: ${details}`);
    }
    assert.match(
      plan(store.db, SQL.byId).join(),
      /USING INDEX sqlite_autoindex_vm_instances_1 \(id=\?\)/,
    );
    assert.match(
      plan(store.db, SQL.byName).join(),
      /USING INDEX sqlite_autoindex_vm_instances_2 \(name=\?\)/,
    );
  });
});

Deno.test("the forced full-scan form the benchmark compares against really is a SCAN", async () => {
  await withStore((store) => {
    assert.deepEqual(plan(store.db, "SELECT * FROM vm_instances WHERE ? IN (id, name)"), [
      "SCAN vm_instances",
    ]);
  });
});

Deno.test("a VM is found by id and by name, and a missing one is undefined", async () => {
  await withStore((store) => {
    const vm = store.insert({ name: "web1", config: CONFIG, configPath: "/x/web1.yaml" });
    assert.match(vm.id, /^[0-9a-f-]{36}$/);
    assert.equal(store.get(vm.id)?.name, "web1");
    assert.equal(store.get("web1")?.id, vm.id);
    assert.deepEqual(store.get("web1")?.config, { ...CONFIG, name: "web1" });
    assert.equal(store.get("web1")?.configPath, "/x/web1.yaml");
    assert.equal(store.get("web1")?.status, "created");
    assert.equal(store.get("nope"), undefined);
    assert.throws(
      () => store.require("nope"),
      (e: QvmError) => e.exitCode === 3 && /no VM with id or name 'nope'/.test(e.message),
    );
  });
});

Deno.test("a duplicate name is a usage error and writes nothing", async () => {
  await withStore((store) => {
    store.insert({ name: "web1", config: CONFIG });
    assert.throws(
      () => store.insert({ name: "web1", config: CONFIG }),
      (e) => e instanceof UsageError && /already exists/.test(e.message),
    );
    assert.equal(store.list().length, 1);
  });
});

Deno.test("status, pid and stop reason update by id or by name", async () => {
  await withStore((store) => {
    const vm = store.insert({ name: "web1", config: CONFIG });
    assert.equal(
      store.updateStatus("web1", "running", { pid: 4242, qmpSocketPath: "/run/x.qmp" }),
      true,
    );
    let got = store.require(vm.id);
    assert.equal(got.status, "running");
    assert.equal(got.pid, 4242);
    assert.equal(got.qmpSocketPath, "/run/x.qmp");
    assert.equal(
      store.updateStatus(vm.id, "stopped", { pid: null, stopReason: "guest shutdown" }),
      true,
    );
    got = store.require("web1");
    assert.equal(got.status, "stopped");
    assert.equal(got.pid, null);
    assert.equal(got.qmpSocketPath, "/run/x.qmp", "fields not given stay as they were");
    assert.equal(got.stopReason, "guest shutdown");
    assert.equal(store.updateStatus("ghost", "running"), false);
  });
});

Deno.test("a config update replaces config and name, and refuses a taken name", async () => {
  await withStore((store) => {
    const a = store.insert({ name: "a", config: CONFIG });
    store.insert({ name: "b", config: CONFIG });
    store.updateConfig("a", { ...CONFIG, memory: "4G", name: "a2" });
    assert.equal(store.require(a.id).name, "a2");
    assert.equal(store.require(a.id).config.memory, "4G");
    assert.throws(() => store.updateConfig("a2", { ...CONFIG, name: "b" }), UsageError);
    assert.equal(store.require(a.id).name, "a2");
  });
});

Deno.test("remove deletes by id or name; list filters by status", async () => {
  await withStore((store) => {
    const a = store.insert({ name: "a", config: CONFIG });
    store.insert({ name: "b", config: CONFIG });
    store.insert({ name: "c", config: CONFIG });
    store.updateStatus("b", "running", { pid: 1 });
    assert.deepEqual(store.list({ status: "running" }).map((v) => v.name), ["b"]);
    assert.deepEqual(store.list().map((v) => v.name), ["a", "b", "c"]);
    assert.equal(store.remove(a.id), true);
    assert.equal(store.remove("c"), true);
    assert.equal(store.remove("c"), false);
    assert.deepEqual(store.list().map((v) => v.name), ["b"]);
  });
});

Deno.test("files qvm created are recorded per VM", async () => {
  await withStore((store) => {
    const vm = store.insert({ name: "a", config: CONFIG });
    store.addCreatedFile(vm.id, "/d/a.qcow2");
    store.addCreatedFile(vm.id, "/d/b.qcow2");
    assert.deepEqual(store.require("a").createdFiles, ["/d/a.qcow2", "/d/b.qcow2"]);
  });
});

Deno.test("a file that is not SQLite is refused and left byte-for-byte untouched", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "qvm.db");
    const bytes = new TextEncoder().encode("name: not a database\n".repeat(100));
    await Deno.writeFile(path, bytes);
    assert.throws(
      () => StateStore.open(path),
      (e) => e instanceof QvmError && /is not an SQLite database/.test(e.message),
    );
    assert.deepEqual(await Deno.readFile(path), bytes);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["qvm.db"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an emptied database is refused while the runtime dir holds any file of a run of a VM's QEMU; a lock alone proves nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qvm-state-" });
  try {
    const dirs = { dataDir: dir, runtimeDir: join(dir, "run") };
    Deno.mkdirSync(dirs.runtimeDir);
    const path = join(dir, "qvm.db");
    const id = crypto.randomUUID();
    for (const kind of Object.keys(RUNTIME_KINDS) as RuntimeKind[]) {
      Deno.writeFileSync(path, new Uint8Array());
      const file = runtimeFile(dirs, { id, kind });
      Deno.writeTextFileSync(file, "");
      try {
        if (kind === "lock") {
          StateStore.open(path, { runtimeDir: dirs.runtimeDir }).close();
        } else {
          assert.throws(
            () => StateStore.open(path, { runtimeDir: dirs.runtimeDir }),
            (e) => e instanceof QvmError && /holds sockets or pid files of 1 VM/.test(e.message),
            kind,
          );
          assert.equal(Deno.statSync(path).size, 0, `${kind}: nothing was written over it`);
        }
      } finally {
        Deno.removeSync(file);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function makeMaqetDb(path: string, extraSql = ""): void {
  const db = new DatabaseSync(path);
  db.exec(
    `CREATE TABLE vm_instances (id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, config_path TEXT,
    config_data TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'created', pid INTEGER, qmp_socket_path TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL); ${extraSql}`,
  );
  db.prepare(
    "INSERT INTO vm_instances (id, name, config_data, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
  )
    .run("11111111-2222-4333-8444-555555555555", "old", JSON.stringify(CONFIG), "t", "t");
  db.close();
}

Deno.test("a maqet (v1) database migrates forward, keeps its rows, and is backed up first", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "qvm.db");
    makeMaqetDb(path);
    const store = StateStore.open(path);
    try {
      assert.equal(store.require("old").id, "11111111-2222-4333-8444-555555555555");
      assert.deepEqual(store.require("old").createdFiles, []);
      assert.equal(store.require("old").stopReason, null);
    } finally {
      store.close();
    }
    const backups = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".bak"));
    assert.equal(backups.length, 1);
    const backup = new DatabaseSync(join(dir, backups[0]));
    const cols = (backup.prepare("PRAGMA table_info(vm_instances)").all() as { name: string }[])
      .map((c) => c.name);
    assert.ok(!cols.includes("stop_reason"), "the backup is the old schema");
    assert.equal(
      (backup.prepare("SELECT name FROM vm_instances").get() as { name: string }).name,
      "old",
    );
    backup.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a migration that fails leaves the old database as it was", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "qvm.db");
    // A column v2 wants to add already exists, so v2's ALTER TABLE fails mid-migration.
    makeMaqetDb(path, "ALTER TABLE vm_instances ADD COLUMN created_files TEXT;");
    assert.throws(
      () => StateStore.open(path),
      (e) => e instanceof QvmError && /left unchanged/.test(e.message),
    );
    const db = new DatabaseSync(path);
    const tables =
      (db.prepare("SELECT name FROM sqlite_master WHERE type='table'").all() as { name: string }[])
        .map((t) => t.name);
    assert.deepEqual(tables, ["vm_instances"]);
    const cols = (db.prepare("PRAGMA table_info(vm_instances)").all() as { name: string }[]).map((
      c,
    ) => c.name);
    assert.ok(!cols.includes("stop_reason"));
    assert.equal(
      (db.prepare("SELECT count(*) AS n FROM vm_instances").get() as { n: number }).n,
      1,
    );
    db.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a database from a newer qvm is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "qvm.db");
    StateStore.open(path).close();
    const db = new DatabaseSync(path);
    db.exec(`INSERT INTO schema_version (version) VALUES (${LATEST_VERSION + 1})`);
    db.close();
    assert.throws(() => StateStore.open(path), /newer than this qvm/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("two processes writing at once both succeed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "qvm.db");
    StateStore.open(path).close();
    const script = `
      import { StateStore } from ${
      JSON.stringify(new URL("../../src/state/mod.ts", import.meta.url).href)
    };
      const store = StateStore.open(${JSON.stringify(path)});
      const tag = Deno.args[0];
      for (let i = 0; i < 200; i++) {
        const vm = store.insert({ name: tag + "-" + i, config: { arguments: [], args: [], storage: [] } });
        store.updateStatus(vm.id, "stopped");
      }
      store.close();
    `;
    const file = join(dir, "writer.ts");
    await Deno.writeTextFile(file, script);
    const run = (tag: string) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", file, tag],
        stderr: "piped",
      }).output();
    const [a, b] = await Promise.all([run("a"), run("b")]);
    assert.equal(a.code, 0, new TextDecoder().decode(a.stderr));
    assert.equal(b.code, 0, new TextDecoder().decode(b.stderr));
    const store = StateStore.open(path);
    try {
      assert.equal(store.list().length, 400);
      assert.equal(store.list({ status: "stopped" }).length, 400);
    } finally {
      store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a write that runs out of space is one StateWriteError, leaves no transaction, and the next write works", async () => {
  await withStore((store) => {
    const vm = store.insert({ name: "a", config: CONFIG });
    const pages = (store.db.prepare("PRAGMA page_count").get() as { page_count: number })
      .page_count;
    store.db.exec(`PRAGMA max_page_count = ${pages}`); // SQLite's own "database or disk is full"
    const big = { ...CONFIG, args: ["x".repeat(200_000)] };
    for (
      const write of [
        () => store.insert({ name: "big", config: big }),
        () => store.updateConfig("a", big),
      ]
    ) {
      assert.throws(write, (e: Error) =>
        e instanceof StateWriteError && e.exitCode === 1 &&
        /^no space left on the data dir /.test(e.message));
      assert.equal(store.db.isTransaction, false);
    }
    assert.equal(store.get("big"), undefined);
    assert.deepEqual(store.get("a")?.config.args, []);
    assert.equal(store.updateStatus(vm.id, "stopped", { stopReason: "test" }), true);
    store.db.exec("PRAGMA max_page_count = 1073741823");
    store.insert({ name: "b", config: CONFIG });
    assert.deepEqual(store.list().map((v) => v.name), ["a", "b"]);
    const check = store.db.prepare("PRAGMA integrity_check").get() as { integrity_check: string };
    assert.equal(check.integrity_check, "ok");
  });
});

Deno.test("closing a store that added, changed or removed a VM refreshes its backup; reads take none", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qvm-state-" });
  const path = join(dir, "qvm.db");
  try {
    let store = StateStore.open(path);
    store.list();
    store.updateStatus("nope", "stopped");
    store.close();
    assert.deepEqual(listBackups(path), []);
    for (const name of ["a", "b"]) {
      store = StateStore.open(path);
      store.insert({ name, config: CONFIG });
      store.close();
    }
    const backups = listBackups(path);
    assert.equal(backups.length, 1);
    assert.deepEqual(readVms(backups[0].path).map((vm) => vm.name), ["a", "b"]);
    store = StateStore.open(path);
    store.remove("a");
    store.close();
    assert.deepEqual(readVms(listBackups(path)[0].path).map((vm) => vm.name), ["b"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("backups start a new generation at most once per interval and keep the newest few", async () => {
  await withStore((store) => {
    const start = Date.parse("2026-01-01T00:00:00Z");
    const first = takeBackup(store.db, store.path, { now: start });
    assert.equal(
      takeBackup(store.db, store.path, { now: start + 60_000 }),
      first,
      "refreshed in place",
    );
    const taken = [first];
    for (let i = 1; i <= BACKUP_GENERATIONS + 2; i++) {
      taken.push(takeBackup(store.db, store.path, { now: start + i * BACKUP_INTERVAL_MS }));
    }
    assert.equal(new Set(taken).size, taken.length, "each interval is a new file");
    const kept = listBackups(store.path).map((b) => b.path);
    assert.deepEqual(
      kept,
      taken.slice(-BACKUP_GENERATIONS).reverse(),
      "newest first, oldest pruned",
    );
    assert.ok(kept.every((p) => p.startsWith(join(store.path, "..", "backups"))));
    const folder = join(store.path, "..", "backups");
    assert.ok(![...Deno.readDirSync(folder)].some((e) => e.name.endsWith(".tmp")));
    // A copy a killed qvm left behind goes once it is clearly abandoned; a fresh one stays.
    const abandoned = `${kept[0]}.0123abcd.tmp`;
    const fresh = `${kept[0]}.4567cdef.tmp`;
    Deno.writeTextFileSync(abandoned, "");
    Deno.writeTextFileSync(fresh, "");
    const old = new Date(Date.now() - 3600_000);
    Deno.utimeSync(abandoned, old, old);
    takeBackup(store.db, store.path);
    assert.ok(!exists(abandoned));
    assert.ok(exists(fresh));
  });
});
