/**
 * The state database under faults, with real qvm subprocesses, real SQLite files and real tmpfs
 * mounts: a full data dir, a damaged or truncated database, lost VMs, a read-only data dir.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { pidsMentioning, type QvmEnv, type QvmResult, withEnv } from "../helpers/qvm.ts";
import { alive, guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { readableQvm } from "../helpers/other_user.ts";
import { needsRoot } from "../helpers/needs.ts";

async function sh(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Mounts a small tmpfs (mode 0700) on `dir`, runs `fn`, and always unmounts it. */
async function withTmpfs(dir: string, size: string, fn: () => Promise<void>): Promise<void> {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  await sh("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir]);
  try {
    await fn();
  } finally {
    try {
      await sh("umount", [dir]);
    } catch {
      await sh("umount", ["-l", dir]);
    }
  }
}

/** Writes zeros into `path` until the file system is full. */
function fillUp(path: string): void {
  const file = Deno.openSync(path, { write: true, create: true });
  const chunk = new Uint8Array(4096);
  try {
    for (;;) file.writeSync(chunk);
  } catch (err) {
    assert.match((err as Error).message, /No space left on device/);
  } finally {
    file.close();
  }
}

function dbPath(env: QvmEnv): string {
  return join(env.dataDir, "qvm.db");
}

/** Opens the database without writing anything, even on a full or read-only file system. */
function openFrozen(path: string): DatabaseSync {
  return new DatabaseSync(`file:${path}?immutable=1`, { readOnly: true });
}

function rows(db: DatabaseSync): string {
  return JSON.stringify(db.prepare("SELECT * FROM vm_instances ORDER BY id").all());
}

function names(db: DatabaseSync): string[] {
  return (db.prepare("SELECT name FROM vm_instances ORDER BY name").all() as { name: string }[])
    .map((r) => r.name);
}

function integrity(db: DatabaseSync): string {
  return (db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[])
    .map((r) => r.integrity_check).join("; ");
}

/** One line on stderr, nothing on stdout. */
function assertOneLine(res: QvmResult, pattern: RegExp, label: string): void {
  const lines = res.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `${label}: ${res.stderr}`);
  assert.match(lines[0], pattern, label);
  assert.doesNotMatch(res.stderr, /internal error/, label);
}

async function addEmpty(env: QvmEnv, name: string): Promise<string> {
  return JSON.parse(await env.ok(["add", "--empty", "--name", name, "--json"])).id;
}

interface Check {
  check: string;
  status: string;
  what: string;
  why: string | null;
  fix: string | null;
}

async function doctorJson(env: QvmEnv): Promise<{ code: number; checks: Check[] }> {
  const res = await env.run(["doctor", "--json"]);
  assert.doesNotMatch(res.stderr, /internal error/);
  return { code: res.code, checks: JSON.parse(res.stdout).checks };
}

const WRITES: string[][] = [
  ["add", "--empty", "--name", "c"],
  ["apply", "a", "--memory", "512M"],
  ["rm", "b"],
  ["start", "b"],
];

// ---- full data dir ----

Deno.test(
  "a full data dir: writes fail with one clear line, change nothing, and work again once space is back",
  { ignore: needsRoot("the full data dir test (it mounts a tmpfs)") },
  async () => {
    await withEnv(async (env) => {
      await withTmpfs(env.dataDir, "2m", async () => {
        await addEmpty(env, "a");
        await addEmpty(env, "b");
        const fill = join(env.dataDir, "fill");
        const noSpace = new RegExp(`^qvm: no space left on the data dir ${env.dataDir}`);

        // Full before qvm opens the database: the open itself cannot write.
        fillUp(fill);
        const frozen = openFrozen(dbPath(env));
        const before = rows(frozen);
        for (const args of WRITES) {
          const res = await env.run(args);
          assert.equal(res.code, 1, `${args.join(" ")}: ${res.stderr}`);
          assertOneLine(res, noSpace, args.join(" "));
        }
        assert.equal(rows(frozen), before);
        assert.equal(integrity(frozen), "ok");
        frozen.close();
        const listed = await env.run(["ls"]);
        assert.equal(listed.code, 0, listed.stderr);
        assert.match(listed.stdout, /^a\s+created/m);
        assert.match(listed.stdout, /^b\s+created/m);
        const { code, checks } = await doctorJson(env);
        assert.equal(code, 1);
        const full = checks.find((c) => c.check === "database" && c.status === "problem");
        assert.match(full?.what ?? "", /^no space left on the data dir /, JSON.stringify(checks));
        assert.match(full?.fix ?? "", /free some space/);

        // Full while another connection keeps the database open: the write itself fails
        // (SQLITE_FULL), and the transaction it was in must not be rolled back twice.
        Deno.removeSync(fill);
        const holder = new DatabaseSync(dbPath(env));
        try {
          assert.deepEqual(names(holder), ["a", "b"]);
          fillUp(fill);
          for (const args of WRITES) {
            const res = await env.run(args);
            assert.equal(res.code, 1, `${args.join(" ")}: ${res.stderr}`);
            assertOneLine(res, noSpace, args.join(" "));
            assert.equal(rows(holder), before);
            assert.equal(integrity(holder), "ok");
          }
        } finally {
          holder.close();
        }
        assert.deepEqual(pidsMentioning(env.root), [], "no QEMU was started");

        // Space is back: the next command works.
        Deno.removeSync(fill);
        await addEmpty(env, "c");
        await env.ok(["apply", "a", "--memory", "512M"]);
        const db = new DatabaseSync(dbPath(env), { readOnly: true });
        try {
          assert.deepEqual(names(db), ["a", "b", "c"]);
          assert.equal(integrity(db), "ok");
        } finally {
          db.close();
        }
      });
    });
  },
);

// ---- damaged, truncated and lost databases ----

/**
 * Overwrites `size` bytes at `offset` with random bytes: 4 KiB at 8192 is the VM table's root page,
 * 3000 bytes at 100 the schema (the rest of page 1, after the file header).
 */
function scribble(path: string, offset: number, size: number): void {
  const junk = crypto.getRandomValues(new Uint8Array(size));
  junk[0] = 0xff; // never a valid b-tree page type, so every run damages the same way
  const file = Deno.openSync(path, { write: true });
  try {
    file.seekSync(offset, Deno.SeekMode.Start);
    file.writeSync(junk);
  } finally {
    file.close();
  }
}

const COMMANDS: string[][] = [
  ["ls"],
  ["ls", "--json"],
  ["status", "a"],
  ["info", "a"],
  ["inspect", "a"],
  ["add", "--empty", "--name", "d"],
  ["apply", "a", "--cpu", "2"],
  ["rm", "a"],
  ["start", "a"],
  ["stop", "a"],
];

/** Follows the restore advice doctor gives: the damaged file aside, the latest backup in place. */
function restoreLatestBackup(env: QvmEnv, fix: string): void {
  const backup = fix.match(/cp (\S+) /)![1];
  const path = dbPath(env);
  assert.ok(backup.startsWith(join(env.dataDir, "backups")), fix);
  Deno.renameSync(path, `${path}.damaged`);
  for (const extra of ["-wal", "-shm"]) {
    try {
      Deno.removeSync(`${path}${extra}`);
    } catch { /* not there */ }
  }
  Deno.copyFileSync(backup, path);
}

for (
  const [where, offset, size] of [["the VM table", 8192, 4096], ["the schema", 100, 3000]] as const
) {
  Deno.test(`a database damaged in ${where}: every command points to qvm doctor; doctor explains the way out`, async () => {
    await damagedCase(offset, size);
  });
}

async function damagedCase(offset: number, size: number): Promise<void> {
  await withEnv(async (env) => {
    for (const name of ["a", "b", "c"]) await addEmpty(env, name);
    scribble(dbPath(env), offset, size);
    for (const args of COMMANDS) {
      const res = await env.run(args);
      assert.equal(res.code, 1, `${args.join(" ")}: ${res.stderr}`);
      assertOneLine(res, /damaged.*qvm doctor/, args.join(" "));
      assert.equal(res.stdout, "", args.join(" "));
    }
    const plain = await env.run(["doctor"]);
    assert.equal(plain.code, 1);
    assert.doesNotMatch(plain.stderr + plain.stdout, /internal error/);
    const { code, checks } = await doctorJson(env);
    assert.equal(code, 1);
    const found = checks.find((c) => c.check === "database" && c.status === "problem")!;
    assert.match(found.what, /fails integrity_check|is damaged/);
    assert.match(found.fix!, /\.recover/);
    assert.match(found.fix!, /restore qvm's latest backup/);
    restoreLatestBackup(env, found.fix!);
    const listed = await env.ok(["ls", "--json"]);
    assert.deepEqual(JSON.parse(listed).map((vm: { name: string }) => vm.name), ["a", "b", "c"]);
    assert.equal((await doctorJson(env)).checks.filter((c) => c.status === "problem").length, 0);
  });
}

Deno.test("a database whose header is overwritten: every command points to qvm doctor; doctor names the backup", async () => {
  await withEnv(async (env) => {
    for (const name of ["a", "b"]) await addEmpty(env, name);
    scribble(dbPath(env), 0, 100);
    for (const args of COMMANDS) {
      const res = await env.run(args);
      assert.equal(res.code, 1, `${args.join(" ")}: ${res.stderr}`);
      assertOneLine(res, /is not an SQLite database.*qvm doctor/, args.join(" "));
    }
    const { code, checks } = await doctorJson(env);
    assert.equal(code, 1);
    const found = checks.find((c) => c.check === "database" && c.status === "problem")!;
    assert.match(found.what, /is not an SQLite database \(left untouched\)$/);
    assert.match(found.fix!, /restore qvm's latest backup/);
    restoreLatestBackup(env, found.fix!);
    const listed = await env.ok(["ls", "--json"]);
    assert.deepEqual(JSON.parse(listed).map((vm: { name: string }) => vm.name), ["a", "b"]);
  });
});

Deno.test("a database truncated to 0 bytes or deleted is not taken as 'no VMs'", async () => {
  await withEnv(async (env) => {
    const aId = await addEmpty(env, "a");
    const bId = await addEmpty(env, "b");
    // What running VMs leave in the runtime dir: evidence of VMs the database should know.
    Deno.mkdirSync(env.runtimeDir, { recursive: true, mode: 0o700 });
    for (const id of [aId, bId]) {
      Deno.writeTextFileSync(join(env.runtimeDir, `${id}.pid`), "999999\n");
    }
    for (const damage of ["truncate", "delete"]) {
      if (damage === "truncate") Deno.truncateSync(dbPath(env), 0);
      else Deno.removeSync(dbPath(env));
      for (const args of [["ls"], ["status", "a"], ["add", "--empty", "--name", "c"]]) {
        const res = await env.run(args);
        assert.equal(res.code, 1, `${damage} ${args.join(" ")}: ${res.stderr}`);
        assertOneLine(res, /latest backup .* holds 2 VMs: run 'qvm doctor'/, args.join(" "));
        assert.equal(res.stdout, "");
      }
      const { code, checks } = await doctorJson(env);
      assert.equal(code, 1);
      const found = checks.find((c) => c.check === "database" && c.status === "problem")!;
      assert.match(found.what, damage === "truncate" ? /is empty/ : /is missing/);
      const files = checks.find((c) => c.check === "database" && /runtime files/.test(c.what));
      assert.ok(files, JSON.stringify(checks));
      assert.match(files.what, /the latest backup holds 2 of them \('a', 'b'\)/);
      if (damage === "truncate") {
        assert.equal(Deno.statSync(dbPath(env)).size, 0, "nothing was written over it");
      }
      Deno.writeFileSync(dbPath(env), new Uint8Array()); // what restoring expects to move aside
      restoreLatestBackup(env, found.fix!);
      const listed = JSON.parse(await env.ok(["ls", "--json"]));
      assert.deepEqual(listed.map((vm: { name: string }) => vm.name), ["a", "b"]);
    }

    // No backup at all: the runtime files of a VM still show the emptied file lost VMs.
    Deno.removeSync(join(env.dataDir, "backups"), { recursive: true });
    Deno.truncateSync(dbPath(env), 0);
    const res = await env.run(["ls"]);
    assert.equal(res.code, 1, res.stderr);
    assertOneLine(
      res,
      /is empty, but .* holds sockets or pid files of 2 VMs: run 'qvm doctor'/,
      "ls",
    );
    const { checks } = await doctorJson(env);
    const files = checks.find((c) => c.check === "database" && /runtime files/.test(c.what));
    assert.ok(files, JSON.stringify(checks));
    assert.match(files.what, new RegExp(aId));
    assert.equal(Deno.statSync(dbPath(env)).size, 0, "nothing was written over it");
  });
});

Deno.test("doctor notices a database with fewer VMs than its latest backup, and runtime files of unknown VMs", async () => {
  await withEnv(async (env) => {
    await addEmpty(env, "a");
    await addEmpty(env, "b");
    const lostId = await addEmpty(env, "lost");
    // qvm's own removal refreshes the backup: no false alarm.
    await addEmpty(env, "gone");
    await env.ok(["rm", "gone"]);
    let report = await doctorJson(env);
    assert.deepEqual(report.checks.filter((c) => c.status === "problem"), []);
    assert.ok(report.checks.some((c) => c.check === "database" && /holds 3 VMs/.test(c.what)));

    // A row lost outside qvm, and the sockets and pid file it left in the runtime dir.
    const db = new DatabaseSync(dbPath(env));
    try {
      db.prepare("DELETE FROM vm_instances WHERE id = ?").run(lostId);
    } finally {
      db.close();
    }
    Deno.mkdirSync(env.runtimeDir, { recursive: true, mode: 0o700 });
    Deno.writeTextFileSync(join(env.runtimeDir, `${lostId}.pid`), "999999\n");
    report = await doctorJson(env);
    assert.equal(report.code, 1);
    const problems = report.checks.filter((c) => c.check === "database" && c.status === "problem");
    const fewer = problems.find((c) => /latest backup/.test(c.what) && /holds 3/.test(c.what));
    assert.ok(fewer, JSON.stringify(problems));
    assert.match(fewer.what, /holds 2 VMs/);
    assert.match(fewer.what, /'lost'/);
    assert.match(fewer.fix!, /cp \S+backups\/qvm-\S+\.db /);
    const files = problems.find((c) => /runtime files/.test(c.what));
    assert.ok(files, JSON.stringify(problems));
    assert.match(files.what, new RegExp(lostId));
    assert.match(files.what, /'lost'/);
  });
});

Deno.test("backups: a command that changes VMs refreshes the latest; commands that only read take none", async () => {
  await withEnv(async (env) => {
    const backups = join(env.dataDir, "backups");
    const list = () => {
      try {
        return [...Deno.readDirSync(backups)].map((e) => e.name).sort();
      } catch {
        return [];
      }
    };
    await env.ok(["ls"]);
    assert.deepEqual(list(), []);
    await addEmpty(env, "a");
    const first = list();
    assert.equal(first.length, 1);
    assert.match(first[0], /^qvm-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z\.db$/);
    await addEmpty(env, "b");
    assert.deepEqual(list(), first, "within the interval the newest backup is refreshed in place");
    const saved = new DatabaseSync(join(backups, first[0]), { readOnly: true });
    try {
      assert.deepEqual(names(saved), ["a", "b"]);
    } finally {
      saved.close();
    }
    const mtime = Deno.statSync(join(backups, first[0])).mtime?.getTime();
    for (const args of [["ls"], ["status", "a"], ["info", "a"], ["inspect", "a"]]) {
      await env.ok(args);
    }
    assert.deepEqual(list(), first);
    assert.equal(Deno.statSync(join(backups, first[0])).mtime?.getTime(), mtime);
    assert.equal(Deno.statSync(backups).mode! & 0o777, 0o700);
  });
});

// ---- read-only data dir ----

Deno.test(
  "a read-only data dir: commands that read work, writes exit 4 naming it, doctor advises no restore",
  { ignore: needsRoot("the read-only data dir tests (they mount a tmpfs)") },
  async () => {
    await withEnv(async (env) => {
      await withTmpfs(env.dataDir, "4m", async () => {
        const aId = await addEmpty(env, "a");
        await addEmpty(env, "b");
        // `a` claims a QEMU that is gone: reading it must reconcile without writing.
        const db = new DatabaseSync(dbPath(env));
        try {
          db.prepare("UPDATE vm_instances SET status = 'running', pid = 999999 WHERE id = ?")
            .run(aId);
        } finally {
          db.close();
        }
        Deno.mkdirSync(join(env.dataDir, "logs"), { recursive: true, mode: 0o700 });
        Deno.writeTextFileSync(join(env.dataDir, "logs", `${aId}.serial.log`), "login: \n");
        const frozen = openFrozen(dbPath(env));
        const before = rows(frozen);
        frozen.close();
        await sh("mount", ["-o", "remount,ro", env.dataDir]);

        const ls = await env.run(["ls"]);
        assert.equal(ls.code, 0, ls.stderr);
        assert.match(ls.stdout, /^a\s+stopped/m);
        assert.match(ls.stdout, /^b\s+created/m);
        const json = JSON.parse(await env.ok(["ls", "--json"]));
        assert.deepEqual(json.map((vm: { status: string }) => vm.status), ["stopped", "created"]);
        assert.match(await env.ok(["status", "a"]), /^a: stopped/);
        assert.match(await env.ok(["info", "b"]), /name: b/);
        assert.equal(JSON.parse(await env.ok(["inspect", "a", "--json"])).status, "stopped");
        assert.match(await env.ok(["logs", "a"]), /login:/);

        for (const args of WRITES) {
          const res = await env.run(args);
          assert.equal(res.code, 4, `${args.join(" ")}: ${res.stderr}`);
          assertOneLine(
            res,
            new RegExp(`read-only.*${env.dataDir}|${env.dataDir}.*read-only`),
            args.join(" "),
          );
        }
        assert.deepEqual(pidsMentioning(env.root), [], "no QEMU was started");

        const { checks } = await doctorJson(env);
        const database = checks.filter((c) => c.check === "database");
        assert.ok(database.some((c) => /read-only/.test(c.what)), JSON.stringify(database));
        const doctor = await env.run(["doctor"]);
        assert.doesNotMatch(doctor.stdout, /restore|backup/i, "nothing to restore");

        const after = openFrozen(dbPath(env));
        try {
          assert.equal(rows(after), before, "reads wrote nothing");
          assert.equal(integrity(after), "ok");
        } finally {
          after.close();
        }
        await sh("mount", ["-o", "remount,rw", env.dataDir]);
        await addEmpty(env, "c");
        assert.match(await env.ok(["status", "a"]), /^a: stopped/);
      });
    });
  },
);

Deno.test(
  "a read-only data dir: snapshot list and wait settle a dead QEMU in memory; restart stops nothing",
  { ignore: needsRoot("the read-only data dir tests (they mount a tmpfs)") },
  async () => {
    await withEnv(async (env) => {
      const disk = join(env.root, "d0.qcow2");
      await sh("qemu-img", ["create", "-q", "-f", "qcow2", disk, "16M"]);
      const item = `storage:\n  - name: d0\n    type: qcow2\n    file: ${disk}\n`;
      const deadId = (await env.ok(["add", await env.file("a.yaml", item), "--name", "a"])).trim();
      const guest = await guestConfig(env, { name: "g" });
      await env.ok(["add", guest]);
      await env.ok(["start", "g", ...WAIT_READY]);
      const { pid } = await env.status("g");
      // `a` claims a QEMU that is gone: reading it must settle that without writing.
      const db = new DatabaseSync(dbPath(env));
      try {
        db.prepare("UPDATE vm_instances SET status = 'running', pid = 999999 WHERE id = ?")
          .run(deadId);
      } finally {
        db.close();
      }
      // A read-only bind mount: QEMU keeps its logs open, so the data dir cannot be remounted.
      await sh("mount", ["--bind", env.dataDir, env.dataDir]);
      try {
        await sh("mount", ["-o", "remount,ro,bind", env.dataDir]);
        const list = await env.run(["snapshot", "list", "a"]);
        assert.equal(list.code, 0, list.stderr);
        assert.match(list.stdout, /no snapshots on d0/);
        const wait = await env.run(["wait", "a", "--for", "stopped", "--timeout", "5"]);
        assert.equal(wait.code, 0, wait.stderr);
        const restart = await env.run(["restart", "g"]);
        assert.equal(restart.code, 4, restart.stderr);
        assertOneLine(restart, new RegExp(`read-only.*${env.dataDir}`), "restart");
        assert.ok(alive(pid), "restart stopped a VM it could not start again");
        assert.equal((await env.status("g")).pid, pid);
      } finally {
        await sh("umount", [env.dataDir]);
      }
      await env.ok(["stop", "g", "--force"]);
    });
  },
);

/**
 * Runs qvm as the unprivileged user `nobody` (for permission cases root would ignore), from a
 * copy it may read wherever the checkout is (see `readableQvm`).
 */
async function runAsNobody(env: QvmEnv, args: string[]): Promise<QvmResult> {
  const { deno, main } = await readableQvm();
  const out = await new Deno.Command("setpriv", {
    args: [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      deno,
      "run",
      "-A",
      "--quiet",
      main,
      ...args,
    ],
    env: {
      HOME: env.root,
      DENO_DIR: join(env.root, "deno"),
      QVM_DATA_DIR: env.dataDir,
      QVM_RUNTIME_DIR: env.runtimeDir,
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("a data dir its user cannot write (mode 0555): reads work, writes exit 4 naming it", {
  ignore: needsRoot("the unwritable data dir test (it runs qvm as nobody)"),
}, async () => {
  await withEnv(async (env) => {
    await sh("chown", ["65534:65534", env.root]);
    const ok = async (args: string[]) => {
      const res = await runAsNobody(env, args);
      assert.equal(res.code, 0, `${args.join(" ")}: ${res.stderr}`);
      return res.stdout;
    };
    await ok(["add", "--empty", "--name", "a"]);
    await ok(["add", "--empty", "--name", "b"]);
    Deno.chmodSync(dbPath(env), 0o444);
    Deno.chmodSync(env.dataDir, 0o555);
    assert.match(await ok(["ls"]), /^a\s+created[\s\S]*^b\s+created/m);
    assert.match(await ok(["status", "a"]), /^a: created/);
    assert.match(await ok(["info", "b"]), /name: b/);
    for (const args of WRITES) {
      const res = await runAsNobody(env, args);
      assert.equal(res.code, 4, `${args.join(" ")}: ${res.stderr}`);
      const named = new RegExp(`${env.dataDir}(\\S*: permission denied| is not writable)`);
      assertOneLine(res, named, args.join(" "));
    }
    const doctor = await runAsNobody(env, ["doctor", "--json"]);
    const checks: Check[] = JSON.parse(doctor.stdout).checks;
    assert.ok(checks.some((c) => c.check === "database" && /not writable/.test(c.what)));
    assert.doesNotMatch(doctor.stdout, /restore|backup/i, "nothing to restore");
    Deno.chmodSync(env.dataDir, 0o700);
    Deno.chmodSync(dbPath(env), 0o600);
    const db = new DatabaseSync(dbPath(env), { readOnly: true });
    try {
      assert.deepEqual(names(db), ["a", "b"]);
    } finally {
      db.close();
    }
  });
});

Deno.test(
  "a database its user cannot read: commands exit 4 naming it; doctor advises access, not a restore",
  { ignore: needsRoot("the unreadable database test (it runs qvm as nobody)") },
  async () => {
    await withEnv(async (env) => {
      await sh("chown", ["65534:65534", env.root]);
      const add = await runAsNobody(env, ["add", "--empty", "--name", "a"]);
      assert.equal(add.code, 0, add.stderr);
      await sh("chown", ["0:0", dbPath(env)]);
      Deno.chmodSync(dbPath(env), 0o600);
      for (const args of [["ls"], ["status", "a"], ["add", "--empty", "--name", "b"]]) {
        const res = await runAsNobody(env, args);
        assert.equal(res.code, 4, `${args.join(" ")}: ${res.stderr}`);
        assertOneLine(res, new RegExp(`${dbPath(env)}: permission denied`), args.join(" "));
      }
      const doctor = await runAsNobody(env, ["doctor", "--json"]);
      const database = (JSON.parse(doctor.stdout).checks as Check[])
        .find((c) => c.check === "database" && c.status === "problem")!;
      assert.match(database.what, /permission denied/);
      assert.match(database.fix!, /chmod|chown/);
      assert.doesNotMatch(database.fix!, /restore|backup/i, "the database is intact");
    });
  },
);
