import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { exists, QvmEnv, withEnv } from "../helpers/qvm.ts";
import { alive, guestConfig } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";
import { planUpkeep } from "../../src/vm/upkeep.ts";
import {
  parseRuntimeFile,
  RUNTIME_KINDS,
  type RuntimeFile,
  runtimeFile,
  type RuntimeKind,
} from "../../src/vm_files.ts";
import type { Finding } from "../../src/vm/doctor/mod.ts";
import { type DirFacts, judgeDir } from "../../src/vm/doctor/dirs.ts";
import { actionFinding } from "../../src/vm/doctor/runtime.ts";
import { formatFinding, summarize } from "../../src/cli/doctor.ts";
import { describeAction } from "../../src/cli/cleanup.ts";

/** A real unix socket file nobody listens on: what a QEMU killed with SIGKILL leaves behind. */
function staleSocket(path: string): void {
  const temp = `${path}.tmp`;
  const listener = Deno.listen({ transport: "unix", path: temp });
  Deno.linkSync(temp, path); // closing the listener unlinks `temp`; the link stays
  listener.close();
}

function runtimeDir(env: QvmEnv): string {
  Deno.mkdirSync(env.runtimeDir, { recursive: true, mode: 0o700 });
  return env.runtimeDir;
}

/** Plants every runtime file kind for `id` and returns their paths. */
function plantAll(env: QvmEnv, id: string): string[] {
  const dir = runtimeDir(env);
  staleSocket(join(dir, `${id}.qmp`));
  staleSocket(join(dir, `${id}.mon`));
  staleSocket(join(dir, `${id}.serial`));
  Deno.writeTextFileSync(join(dir, `${id}.pid`), "999999\n");
  Deno.writeTextFileSync(join(dir, `${id}.lock`), "");
  return ["qmp", "mon", "serial", "pid", "lock"].map((k) => join(dir, `${id}.${k}`));
}

async function deadPid(): Promise<number> {
  const child = new Deno.Command("true").spawn();
  await child.status;
  return child.pid;
}

function markRunning(env: QvmEnv, name: string, pid: number): void {
  const db = new DatabaseSync(join(env.dataDir, "qvm.db"));
  try {
    db.prepare("UPDATE vm_instances SET status = 'running', pid = ? WHERE name = ?").run(pid, name);
  } finally {
    db.close();
  }
}

function stored(env: QvmEnv, name: string): { status: string; pid: number | null } {
  const db = new DatabaseSync(join(env.dataDir, "qvm.db"), { readOnly: true });
  try {
    const row = db.prepare("SELECT status, pid FROM vm_instances WHERE name = ?").get(name) as {
      status: string;
      pid: number | null;
    };
    return { status: row.status, pid: row.pid };
  } finally {
    db.close();
  }
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

async function doctorJson(env: QvmEnv, args: string[] = []) {
  const res = await env.run(["doctor", "--json", ...args]);
  return { code: res.code, checks: JSON.parse(res.stdout).checks as Check[], stderr: res.stderr };
}

// ---- pure parts ----

Deno.test("runtime file names give the VM id and kind; other files are not qvm's", () => {
  const cases: [string, ReturnType<typeof parseRuntimeFile>][] = [
    ["abc.qmp", { id: "abc", kind: "qmp" }],
    ["a.b.mon", { id: "a.b", kind: "mon" }],
    ["x.serial", { id: "x", kind: "serial" }],
    ["x.pid", { id: "x", kind: "pid" }],
    ["x.lock", { id: "x", kind: "lock" }],
    [".qmp", undefined],
    ["notes.txt", undefined],
    ["x.qmp.bak", undefined],
  ];
  for (const [name, want] of cases) assert.deepEqual(parseRuntimeFile(name), want, name);
});

Deno.test("cleanup plans: live QEMU untouched, unknown VM fully removed, own lock kept, busy skipped", () => {
  const files = (id: string): RuntimeFile[] =>
    (["qmp", "pid", "lock"] as const).map((kind) => ({ id, kind, path: `/r/${id}.${kind}` }));
  const base = { id: "v1", files: files("v1"), qemuAlive: false, lockHeld: false };
  const stopped = { name: "web", status: "stopped" as const, pid: null };
  const running = { name: "web", status: "running" as const, pid: 42 };
  const summary = (facts: Parameters<typeof planUpkeep>[0]) => {
    const plan = planUpkeep(facts);
    return {
      busy: plan.busy,
      actions: plan.actions.map((a) => `${a.action} ${a.path ?? a.vm}: ${a.reason}`),
    };
  };
  assert.deepEqual(summary({ ...base, vm: running, qemuAlive: true }), {
    busy: false,
    actions: [],
  });
  assert.deepEqual(summary(base), {
    busy: false,
    actions: [
      "remove /r/v1.qmp: no VM with id 'v1' exists",
      "remove /r/v1.pid: no VM with id 'v1' exists",
      "remove /r/v1.lock: no VM with id 'v1' exists",
    ],
  });
  assert.deepEqual(summary({ ...base, vm: stopped }), {
    busy: false,
    actions: [
      "remove /r/v1.qmp: VM 'web' is not running",
      "remove /r/v1.pid: VM 'web' is not running",
    ],
  });
  assert.deepEqual(summary({ ...base, files: [], vm: running }), {
    busy: false,
    actions: ["settle web: marked running but its QEMU (pid 42) is gone"],
  });
  assert.deepEqual(summary({ ...base, vm: running, lockHeld: true }), { busy: true, actions: [] });
  assert.deepEqual(summary({ ...base, files: [], vm: stopped, lockHeld: true }), {
    busy: false,
    actions: [],
  });
});

Deno.test("a folder is judged by lstat: refused if a link, not ours or writable by others; else mode 0700", () => {
  const good: DirFacts = {
    path: "/q",
    exists: true,
    isDirectory: true,
    mode: 0o700,
    uid: 1000,
    writable: true,
  };
  const verdicts = (facts: Partial<DirFacts>) =>
    judgeDir("runtime_dir", { ...good, ...facts }, { uid: 1000 }).map((f) =>
      `${f.status}: ${f.what}${f.repair ? ` [${f.repair}]` : ""}${f.refused ? " [refused]" : ""}`
    );
  assert.deepEqual(verdicts({}), ["ok: runtime dir /q: yours, writable, mode 0700"]);
  assert.deepEqual(verdicts({ exists: false }), [
    "ok: runtime dir /q does not exist yet (qvm creates it, mode 0700, when needed)",
  ]);
  assert.deepEqual(verdicts({ mode: 0o755 }), [
    "problem: runtime dir /q has mode 0755, not 0700 [chmod]",
  ]);
  assert.deepEqual(verdicts({ writable: false, mode: 0o40755 }), [
    "problem: runtime dir /q is not writable",
    "problem: runtime dir /q has mode 0755, not 0700 [chmod]",
  ]);
  // Refused folders are never repaired: no chmod through a link, of someone else's or an open one.
  assert.deepEqual(verdicts({ uid: 0, writable: false, mode: 0o40777 }), [
    "problem: runtime dir /q belongs to uid 0, not to you (uid 1000) [refused]",
    "problem: runtime dir /q has mode 0777: others can write to it [refused]",
  ]);
  assert.deepEqual(verdicts({ uid: 0 }), [
    "problem: runtime dir /q belongs to uid 0, not to you (uid 1000) [refused]",
  ]);
  assert.deepEqual(verdicts({ mode: 0o770 }), [
    "problem: runtime dir /q has mode 0770: others can write to it [refused]",
  ]);
  assert.deepEqual(verdicts({ isSymlink: true, isDirectory: false }), [
    "problem: runtime dir /q is a symbolic link [refused]",
  ]);
  assert.deepEqual(verdicts({ isDirectory: false }), [
    "problem: runtime dir /q is not a folder [refused]",
  ]);
  assert.match(
    judgeDir("data_dir", { ...good, isDirectory: false }, { uid: 1000 })[0].fix!,
    /--data-dir/,
  );
});

Deno.test("a finding prints as what, why and fix: plain words off a TTY, marks on one", () => {
  const finding: Finding = {
    check: "runtime_files",
    status: "problem",
    what: "stale socket /run/qvm/x.qmp",
    why: "a leftover",
    fix: "qvm cleanup",
  };
  assert.equal(
    formatFinding(finding, false),
    "problem: stale socket /run/qvm/x.qmp -- a leftover -- fix: qvm cleanup",
  );
  assert.equal(
    formatFinding({ ...finding, status: "fixed", fix: "removed" }, false),
    "fixed: stale socket /run/qvm/x.qmp -- a leftover -- done: removed",
  );
  assert.equal(
    formatFinding({ ...finding, status: "ok", what: "all good", why: null, fix: null }, false),
    "ok: all good",
  );
  const fancy = formatFinding(finding, true);
  assert.match(fancy, /✗.* stale socket \/run\/qvm\/x\.qmp — a leftover — fix: qvm cleanup$/);
  assert.ok(fancy.includes("\x1b[31m"));
  const ok = (status: Finding["status"]) => ({ ...finding, status });
  assert.equal(summarize([ok("ok")]), "no problems found");
  assert.equal(summarize([ok("ok"), ok("warning")]), "no problems found (1 warning)");
  assert.equal(summarize([ok("problem"), ok("problem"), ok("fixed")]), "2 problems, 1 fixed");
});

Deno.test("cleanup actions read as findings and as one line each", () => {
  const remove = {
    action: "remove" as const,
    path: "/r/x.qmp",
    vm: "x",
    reason: "no VM with id 'x' exists",
  };
  const settle = {
    action: "settle" as const,
    path: null,
    vm: "web",
    reason: "marked running but its QEMU (pid 7) is gone",
  };
  assert.deepEqual(actionFinding(remove, false), {
    check: "runtime_files",
    status: "problem",
    what: "stale socket /r/x.qmp (no VM with id 'x' exists)",
    why: "a leftover from a QEMU that is gone; harmless but confusing",
    fix: "qvm cleanup (or qvm doctor --fix)",
  });
  assert.match(actionFinding({ ...remove, path: "/r/x.pid" }, false).what, /^stale pid file /);
  assert.match(actionFinding({ ...remove, path: "/r/x.lock" }, true).what, /^stale lock file /);
  assert.equal(actionFinding(remove, true).status, "fixed");
  assert.equal(
    actionFinding(settle, false).what,
    "VM 'web' is marked running but its QEMU (pid 7) is gone",
  );
  assert.equal(
    describeAction(remove, true),
    "would remove /r/x.qmp (no VM with id 'x' exists)",
  );
  assert.equal(
    describeAction(settle, false),
    "settled VM 'web' (marked running but its QEMU (pid 7) is gone)",
  );
});

// ---- cleanup ----

Deno.test("cleanup --dry-run lists stale files and removes nothing; cleanup removes them; a running VM's files survive", async () => {
  await withEnv(async (env) => {
    const cfg = await guestConfig(env, { name: "g1" });
    const liveId = JSON.parse(await env.ok(["add", cfg, "--json"])).id;
    await env.ok(["start", "g1", "--wait-for", "qmp"]);
    const livePid = (await env.status("g1")).pid;
    const liveFiles = ["qmp", "mon", "serial", "pid", "lock"].map((k) =>
      join(env.runtimeDir, `${liveId}.${k}`)
    );
    assert.ok(liveFiles.every(exists));

    const ghost = crypto.randomUUID();
    const ghostFiles = plantAll(env, ghost);
    const stoppedId = await addEmpty(env, "s1");
    const [sQmp, sMon, sSerial, sPid, sLock] = plantAll(env, stoppedId);
    const other = join(env.runtimeDir, "notes.txt");
    Deno.writeTextFileSync(other, "mine");

    const dry = await env.run(["cleanup", "--dry-run", "--json"]);
    assert.equal(dry.code, 0, dry.stderr);
    const planned = JSON.parse(dry.stdout);
    assert.deepEqual(Object.keys(planned[0]), ["action", "path", "vm", "reason"]);
    assert.deepEqual(
      planned.map((a: { path: string }) => a.path).sort(),
      [...ghostFiles, sQmp, sMon, sSerial, sPid].sort(),
    );
    assert.ok(planned.every((a: { action: string }) => a.action === "remove"));
    assert.ok([...ghostFiles, sQmp, sPid, sLock, other, ...liveFiles].every(exists));
    const dryText = await env.ok(["cleanup", "--dry-run"]);
    assert.match(dryText, new RegExp(`^would remove ${sQmp} \\(VM 's1' is not running\\)$`, "m"));
    assert.match(dryText, new RegExp(`^would remove ${ghostFiles[4]} \\(no VM with id `, "m"));

    const res = await env.run(["cleanup"]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(
      res.stdout,
      new RegExp(`^removed ${ghostFiles[0]} \\(no VM with id '${ghost}'`, "m"),
    );
    assert.equal(res.stdout.trim().split("\n").length, 9);
    assert.ok(!ghostFiles.some(exists), "every file of an unknown VM is gone");
    assert.ok(![sQmp, sMon, sSerial, sPid].some(exists), "a stopped VM's leftovers are gone");
    assert.ok(exists(sLock), "a known VM's lock file is its lock, and stays");
    assert.ok(exists(other), "files that are not qvm's are left alone");
    assert.ok(liveFiles.every(exists), "a running VM's files survive");
    assert.ok(alive(livePid));
    assert.equal((await env.status("g1")).status, "running");

    const again = await env.run(["cleanup"]);
    assert.equal(again.code, 0);
    assert.equal(again.stdout, "");
    assert.match(again.stderr, /^nothing to clean up\n$/);
    assert.deepEqual(JSON.parse(await env.ok(["cleanup", "--json"])), []);
  });
});

Deno.test("cleanup of a stopped VM removes every runtime file the file layout names but its lock", async () => {
  await withEnv(async (env) => {
    const id = await addEmpty(env, "s1");
    const dir = runtimeDir(env);
    const planted = Object.keys(RUNTIME_KINDS).map((kind) => {
      const path = runtimeFile(env, { id, kind: kind as RuntimeKind });
      if (RUNTIME_KINDS[kind as RuntimeKind] === "socket") staleSocket(path);
      else Deno.writeTextFileSync(path, kind === "pid" ? "999999\n" : "");
      return path;
    });
    assert.ok(planted.every((path) => path.startsWith(`${dir}/`) && exists(path)));
    const lock = runtimeFile(env, { id, kind: "lock" });
    const res = await env.run(["cleanup", "--json"]);
    assert.equal(res.code, 0, res.stderr);
    const removed = JSON.parse(res.stdout).map((a: { path: string }) => a.path).sort();
    assert.deepEqual(removed, planted.filter((path) => path !== lock).sort());
    assert.deepEqual(planted.filter(exists), [lock], "only the VM's own lock file stays");
  });
});

Deno.test("cleanup settles a VM marked running whose QEMU is gone; --dry-run only says it would", async () => {
  await withEnv(async (env) => {
    await addEmpty(env, "d1");
    const pid = await deadPid();
    markRunning(env, "d1", pid);
    const dry = await env.ok(["cleanup", "--dry-run"]);
    assert.equal(
      dry,
      `would settle VM 'd1' (marked running but its QEMU (pid ${pid}) is gone)\n`,
    );
    assert.deepEqual(stored(env, "d1"), { status: "running", pid });
    const res = JSON.parse(await env.ok(["cleanup", "--json"]));
    assert.equal(res.length, 1);
    assert.equal(res[0].action, "settle");
    assert.equal(res[0].vm, "d1");
    assert.equal(res[0].path, null);
    assert.match(res[0].reason, /is gone; now stopped \(/);
    assert.deepEqual(stored(env, "d1"), { status: "stopped", pid: null });
  });
});

Deno.test("cleanup never touches the files of a VM whose lock another process holds", async () => {
  await withEnv(async (env) => {
    const ghost = crypto.randomUUID();
    const files = plantAll(env, ghost);
    const lock = await Deno.open(join(env.runtimeDir, `${ghost}.lock`), {
      read: true,
      write: true,
    });
    await lock.lock(true);
    try {
      const res = await env.run(["cleanup"]);
      assert.equal(res.code, 0);
      assert.equal(res.stdout, "");
      assert.match(
        res.stderr,
        new RegExp(`skipped VM '${ghost}': another qvm command holds its lock`),
      );
      assert.ok(files.every(exists));
      assert.equal((await env.run(["cleanup", "--dry-run"])).stdout, "");
    } finally {
      lock.close();
    }
    await env.ok(["cleanup"]);
    assert.ok(!files.some(exists), "once the lock is free, the leftovers go");
  });
});

Deno.test("cleanup usage errors are exit 3 with one line", async () => {
  await withEnv(async (env) => {
    let res = await env.run(["cleanup", "now"]);
    assert.equal(res.code, 3);
    assert.match(res.stderr, /^qvm: qvm cleanup: unexpected argument 'now'\n$/);
    res = await env.run(["cleanup", "--force"]);
    assert.equal(res.code, 3);
    assert.match(res.stderr, /^qvm: qvm cleanup: unknown option '--force'\n$/);
  });
});

// ---- doctor ----

Deno.test("doctor on a healthy home finds no problems and prints each check", async () => {
  await withEnv(async (env) => {
    const res = await env.run(["doctor"]);
    assert.equal(res.code, 0, res.stdout);
    assert.match(res.stdout, /^ok: qemu-system-x86_64: QEMU emulator version \d/m);
    assert.match(res.stdout, /^ok: qemu-img: qemu-img version \d/m);
    assert.match(res.stdout, /^(ok|warning): .*\/dev\/kvm/m);
    assert.match(res.stdout, /^ok: database .*integrity_check and quick_check ok$/m);
    assert.match(res.stdout, /^no problems found/m);
    const { code, checks } = await doctorJson(env);
    assert.equal(code, 0);
    assert.deepEqual(Object.keys(checks[0]), ["check", "status", "what", "why", "fix"]);
    assert.deepEqual(
      [...new Set(checks.map((c) => c.check))],
      [
        "qemu_system",
        "qemu_img",
        "virsh",
        "cloud_seed",
        "kvm",
        "data_dir",
        "runtime_dir",
        "ssh_key",
        "database",
        "runtime_files",
        "vm_status",
        "orphaned_qemu",
        "frozen_guest",
      ],
    );
    assert.ok(checks.every((c) => c.status !== "problem"));
  });
});

Deno.test("doctor reports a stale socket (exit 1); doctor --fix removes it (exit 0)", async () => {
  await withEnv(async (env) => {
    const sock = join(runtimeDir(env), `${crypto.randomUUID()}.qmp`);
    staleSocket(sock);
    const res = await env.run(["doctor"]);
    assert.equal(res.code, 1);
    assert.match(
      res.stdout,
      new RegExp(
        `^problem: stale socket ${sock} \\(no VM with id '.*' exists\\) -- a leftover from a QEMU ` +
          "that is gone; harmless but confusing -- fix: qvm cleanup \\(or qvm doctor --fix\\)$",
        "m",
      ),
    );
    assert.match(res.stdout, /^1 problem$/m);
    assert.ok(exists(sock), "doctor without --fix changes nothing");
    const fix = await env.run(["doctor", "--fix"]);
    assert.equal(fix.code, 0, fix.stdout);
    assert.match(fix.stdout, new RegExp(`^fixed: stale socket ${sock} .* -- done: removed$`, "m"));
    assert.ok(!exists(sock));
    assert.equal((await env.run(["doctor"])).code, 0);
  });
});

Deno.test("doctor reports a VM marked running whose QEMU is gone; --fix settles it", async () => {
  await withEnv(async (env) => {
    await addEmpty(env, "d1");
    const pid = await deadPid();
    markRunning(env, "d1", pid);
    const { code, checks } = await doctorJson(env);
    assert.equal(code, 1);
    const found = checks.find((c) => c.check === "vm_status")!;
    assert.equal(found.status, "problem");
    assert.equal(found.what, `VM 'd1' is marked running but its QEMU (pid ${pid}) is gone`);
    assert.equal(found.fix, "qvm cleanup (or qvm doctor --fix)");
    assert.deepEqual(stored(env, "d1"), { status: "running", pid }, "doctor alone changes nothing");
    const fixed = await doctorJson(env, ["--fix"]);
    assert.equal(fixed.code, 0);
    assert.equal(fixed.checks.find((c) => c.check === "vm_status")!.status, "fixed");
    assert.deepEqual(stored(env, "d1"), { status: "stopped", pid: null });
  });
});

Deno.test("doctor reports a runtime dir with mode 0755; --fix restores 0700", async () => {
  await withEnv(async (env) => {
    Deno.chmodSync(runtimeDir(env), 0o755);
    const res = await env.run(["doctor"]);
    assert.equal(res.code, 1);
    assert.match(
      res.stdout,
      new RegExp(
        `^problem: runtime dir ${env.runtimeDir} has mode 0755, not 0700 -- other users could ` +
          `reach your VMs' QMP sockets, consoles or disks -- fix: chmod 700 ${env.runtimeDir}`,
        "m",
      ),
    );
    assert.equal(Deno.statSync(env.runtimeDir).mode! & 0o777, 0o755);
    const fix = await env.run(["doctor", "--fix"]);
    assert.equal(fix.code, 0, fix.stdout);
    assert.match(fix.stdout, /^fixed: runtime dir .* -- done: chmod 700 /m);
    assert.equal(Deno.statSync(env.runtimeDir).mode! & 0o777, 0o700);
  });
});

Deno.test("doctor finds a QEMU of an unknown VM using this runtime dir; --fix does not kill it", async () => {
  await withEnv(async (env) => {
    const uuid = crypto.randomUUID();
    const pidFile = join(runtimeDir(env), `${uuid}.pid`);
    // Another qvm home's QEMU (its files elsewhere) is not this home's business.
    const elsewhere = join(env.root, "other");
    Deno.mkdirSync(elsewhere);
    // Started the way qvm starts a VM's QEMU: its pid file and QMP socket beside each other.
    const bare = (pidfile: string, id: string) =>
      new Deno.Command("qemu-system-x86_64", {
        args: [
          ...["-accel", "tcg", "-display", "none", "-S", "-m", "32", "-nodefaults"],
          ...["-uuid", id, "-pidfile", pidfile, "-daemonize"],
          ...["-qmp", `unix:${pidfile.replace(/\.pid$/, ".qmp")},server=on,wait=off`],
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
    const otherPidFile = join(elsewhere, "q.pid");
    for (
      const out of await Promise.all([bare(pidFile, uuid), bare(otherPidFile, crypto.randomUUID())])
    ) {
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
    }
    const pid = Number(Deno.readTextFileSync(pidFile).trim());
    const otherPid = Number(Deno.readTextFileSync(otherPidFile).trim());
    try {
      const res = await env.run(["doctor"]);
      assert.equal(res.code, 1);
      assert.match(
        res.stdout,
        new RegExp(
          `^problem: QEMU process ${pid} \\(-uuid ${uuid}\\) uses ${env.runtimeDir} but no VM has ` +
            `that id -- .* -- fix: kill ${pid} .*doctor --fix does not kill processes`,
          "m",
        ),
      );
      assert.ok(!res.stdout.includes(`process ${otherPid} `));
      const fix = await doctorJson(env, ["--fix"]);
      assert.equal(fix.code, 1, "the problem remains after --fix");
      const orphans = fix.checks.filter((c) => c.check === "orphaned_qemu");
      assert.deepEqual(orphans.map((c) => c.status), ["problem"]);
      assert.ok(alive(pid), "--fix never kills a process");
      assert.ok(exists(pidFile), "a live QEMU's files are not stale");
    } finally {
      for (const p of [pid, otherPid]) {
        try {
          Deno.kill(p, "SIGKILL");
        } catch { /* gone */ }
      }
      await eventually(() => !alive(pid) && !alive(otherPid));
    }
  });
});

Deno.test("doctor reports a state file that is not SQLite and leaves it untouched", async () => {
  await withEnv(async (env) => {
    Deno.mkdirSync(env.dataDir, { mode: 0o700 });
    const db = join(env.dataDir, "qvm.db");
    Deno.writeTextFileSync(db, "this is not a database, just text");
    const { code, checks } = await doctorJson(env);
    assert.equal(code, 1);
    const found = checks.find((c) => c.check === "database")!;
    assert.equal(found.status, "problem");
    assert.equal(found.what, `${db} is not an SQLite database (left untouched)`);
    assert.match(found.why!, /checks that need them were skipped/);
    assert.equal(Deno.readTextFileSync(db), "this is not a database, just text");
    assert.ok(!checks.some((c) => c.check === "orphaned_qemu"));
  });
});

Deno.test("doctor reports a database that fails integrity_check", async () => {
  await withEnv(async (env) => {
    await addEmpty(env, "a1");
    const path = join(env.dataDir, "qvm.db");
    const db = new DatabaseSync(path);
    let rootpage: number, pageSize: number;
    try {
      db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      ({ rootpage } = db.prepare("SELECT rootpage FROM sqlite_master WHERE name = ?")
        .get("sqlite_autoindex_vm_instances_2") as { rootpage: number });
      ({ page_size: pageSize } = db.prepare("PRAGMA page_size").get() as { page_size: number });
    } finally {
      db.close();
    }
    // Change the name inside the name index only: the index no longer matches the table.
    const bytes = Deno.readFileSync(path);
    const page = bytes.subarray((rootpage - 1) * pageSize, rootpage * pageSize);
    const at = new TextDecoder("latin1").decode(page).indexOf("a1");
    assert.ok(at > 0);
    page[at] = "x".charCodeAt(0);
    Deno.writeFileSync(path, bytes);

    const { code, checks } = await doctorJson(env);
    assert.equal(code, 1);
    const found = checks.find((c) => c.check === "database")!;
    assert.equal(found.status, "problem");
    assert.equal(
      found.what,
      `database ${path} fails integrity_check: row 1 missing from index sqlite_autoindex_vm_instances_2`,
    );
    assert.match(found.fix!, /\.recover/);
  });
});

Deno.test("doctor without QEMU on PATH names both missing binaries (exit 1)", async () => {
  await withEnv(async (env) => {
    const res = await env.run(["doctor"], { env: { PATH: "/nonexistent" } });
    assert.equal(res.code, 1);
    assert.match(
      res.stdout,
      /^problem: qemu-system-x86_64 not found -- qvm cannot start a VM without it -- fix: install qemu-system-x86/m,
    );
    assert.match(res.stdout, /^problem: qemu-img not found -- .* -- fix: install qemu-utils/m);
  });
});

Deno.test("doctor names a VM whose own QEMU binary is missing", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", "--empty", "--name", "b1", "--binary", "/nonexistent/qemu-system-arm"]);
    const { code, checks } = await doctorJson(env);
    assert.equal(code, 1);
    assert.deepEqual(checks.find((c) => c.check === "vm_binary"), {
      check: "vm_binary",
      status: "problem",
      what: "QEMU binary '/nonexistent/qemu-system-arm' of VM 'b1' not found",
      why: "those VMs cannot start",
      fix: "install it, or change the VM's binary: with 'qvm apply'",
    });
  });
});

Deno.test("doctor usage errors are exit 3 with one line", async () => {
  await withEnv(async (env) => {
    const res = await env.run(["doctor", "all"]);
    assert.equal(res.code, 3);
    assert.match(res.stderr, /^qvm: qvm doctor: unexpected argument 'all'\n$/);
  });
});
