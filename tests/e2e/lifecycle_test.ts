import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { withEnv } from "../helpers/qvm.ts";
import {
  alive,
  GUEST_READY_MARKER,
  GUEST_SHUTDOWN,
  guestConfig,
  pidsMentioning,
  shutdownCauses,
  WAIT_READY,
} from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";

Deno.test("a booted guest is running; a graceful stop ends at the ACPI step", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "g1" })]);
    assert.match(await env.ok(["start", "g1", ...WAIT_READY]), /started g1 \(pid \d+\)/);
    const s = await env.status("g1");
    assert.equal(s.status, "running");
    assert.equal(s.qemu_status, "running");
    assert.ok(alive(s.pid));
    assert.match(await env.ok(["logs", "g1"]), new RegExp(GUEST_READY_MARKER));
    const ls = JSON.parse(await env.ok(["ls", "--json"]));
    assert.deepEqual(ls.map((v: { status: string }) => v.status), ["running"]);
    const stop = JSON.parse(await env.ok(["stop", "g1", "--json", "--timeout", "30"]));
    assert.equal(stop.step, "acpi");
    assert.ok(!alive(s.pid));
    // The guest itself asked QEMU to power off (not a quit or a signal qvm counted as ACPI).
    assert.deepEqual(await shutdownCauses(env, s.id), [GUEST_SHUTDOWN]);
    const after = await env.status("g1");
    assert.equal(after.status, "stopped");
    assert.equal(after.pid, null);
    assert.match(after.stop_reason, /ACPI power-off/);
    assert.deepEqual(pidsMentioning(env.root), []);
  });
});

Deno.test("a guest that ignores ACPI is escalated and gone within the timeout", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "deaf", acpi: false })]);
    await env.ok(["start", "deaf", ...WAIT_READY]);
    const { pid } = await env.status("deaf");
    const started = Date.now();
    const res = await env.run(["stop", "deaf", "--timeout", "4"]);
    const elapsed = Date.now() - started;
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /stopped deaf \(QMP quit\)/);
    assert.ok(!alive(pid));
    // The sequence is budgeted inside the timeout; allow for qvm's own start-up on a busy machine.
    assert.ok(elapsed < 4000 + 3000, `took ${elapsed} ms`);
    assert.match((await env.status("deaf")).stop_reason, /QMP quit/);
  });
});

Deno.test("stop --force kills at once", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "f1", acpi: false })]);
    await env.ok(["start", "f1", "--wait-for", "qmp"]);
    const { pid } = await env.status("f1");
    assert.match(await env.ok(["stop", "f1", "--force"]), /\(SIGKILL\)/);
    assert.ok(!alive(pid));
  });
});

Deno.test("kill -9 of QEMU: the next read says stopped, notes the crash, clears the pid", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "k1" })]);
    await env.ok(["start", "k1", "--wait-for", "qmp"]);
    const { pid } = await env.status("k1");
    Deno.kill(pid, "SIGKILL");
    assert.ok(await eventually(() => !alive(pid)));
    const s = await env.status("k1");
    assert.equal(s.status, "stopped");
    assert.equal(s.pid, null);
    assert.match(s.stop_reason, /crashed or killed/);
  });
});

Deno.test("a guest that powers itself off is seen as stopped by guest shutdown", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "p1" })]);
    await env.ok(["start", "p1", ...WAIT_READY]);
    const { pid } = await env.status("p1");
    const conn = await Deno.connect({
      transport: "unix",
      path: join(env.runtimeDir, `${(await env.status("p1")).id}.serial`),
    });
    await conn.write(new TextEncoder().encode("poweroff -f\n"));
    assert.ok(await eventually(() => !alive(pid), { timeout: 20_000 }));
    conn.close();
    const s = await env.status("p1");
    assert.equal(s.status, "stopped");
    assert.equal(s.stop_reason, "guest shutdown");
  });
});

Deno.test("SIGTERM from outside is noted as killed by signal 15", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "t1" })]);
    await env.ok(["start", "t1", "--wait-for", "qmp"]);
    const { pid } = await env.status("t1");
    Deno.kill(pid, "SIGTERM");
    assert.ok(await eventually(() => !alive(pid)));
    assert.equal((await env.status("t1")).stop_reason, "killed (signal 15)");
  });
});

Deno.test("a planted pid that is not our QEMU is never running and never signalled", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", await guestConfig(env, { name: "s1" })])).trim();
    const sleeper = new Deno.Command("sleep", { args: ["300"] }).spawn();
    try {
      const db = new DatabaseSync(join(env.dataDir, "qvm.db"));
      db.prepare("UPDATE vm_instances SET status = 'running', pid = ? WHERE id = ?").run(
        sleeper.pid,
        id,
      );
      db.close();
      const s = await env.status("s1");
      assert.notEqual(s.status, "running");
      assert.equal(s.pid, null);
      // Plant it again for stop and rm --force: neither may touch the sleeper.
      for (const args of [["stop", "s1"], ["rm", "s1", "--force", "--yes"]]) {
        const again = new DatabaseSync(join(env.dataDir, "qvm.db"));
        again.prepare("UPDATE vm_instances SET status = 'running', pid = ? WHERE id = ?").run(
          sleeper.pid,
          id,
        );
        again.close();
        const res = await env.run(args);
        assert.equal(res.code, 0, res.stderr);
        assert.ok(alive(sleeper.pid), `${args[0]} must leave the unrelated process alive`);
      }
      assert.deepEqual(JSON.parse(await env.ok(["ls", "--json"])), []);
    } finally {
      sleeper.kill("SIGKILL");
      await sleeper.status;
    }
  });
});

Deno.test("ten concurrent starts of one VM give exactly one QEMU", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "c1" })]);
    const results = await Promise.all(
      Array.from(
        { length: 10 },
        () => env.run(["start", "c1", "--wait-for", "qmp", "--timeout", "60"]),
      ),
    );
    const ok = results.filter((r) => r.code === 0);
    assert.equal(ok.length, 1, results.map((r) => r.stderr).join(""));
    for (const r of results.filter((r) => r.code !== 0)) assert.match(r.stderr, /already running/);
    assert.equal(pidsMentioning(env.root).length, 1);
    assert.equal((await env.status("c1")).status, "running");
  });
});

Deno.test("eight VMs started concurrently all run, with no socket or disk collisions", async () => {
  await withEnv(async (env) => {
    const names = Array.from({ length: 8 }, (_, i) => `m${i}`);
    for (const name of names) {
      await env.ok([
        "add",
        await guestConfig(env, { name, extra: "storage: [{name: hdd, size: 16M}]" }),
      ]);
    }
    const results = await Promise.all(
      names.map((n) => env.run(["start", n, "--wait-for", "qmp", "--timeout", "90"])),
    );
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const ls = JSON.parse(await env.ok(["ls", "--json"]));
    assert.deepEqual(ls.map((v: { status: string }) => v.status), names.map(() => "running"));
    const pids = new Set(ls.map((v: { pid: number }) => v.pid));
    assert.equal(pids.size, 8);
    const inspected = await Promise.all(
      names.map(async (n) => JSON.parse(await env.ok(["inspect", n]))),
    );
    const sockets = new Set(inspected.map((i) => i.process.qmp_socket));
    const disks = new Set(inspected.map((i) => i.storage[0].file));
    assert.equal(sockets.size, 8);
    assert.equal(disks.size, 8);
    for (const disk of disks) assert.ok(Deno.statSync(disk as string).isFile);
  });
});

Deno.test("start refuses a VM that is already running", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "r1" })]);
    await env.ok(["start", "r1", "--wait-for", "qmp"]);
    const res = await env.run(["start", "r1"]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /already running/);
    assert.equal(pidsMentioning(env.root).length, 1);
  });
});

/** Failed starts: exit code, QEMU's message, status failed, no process left. */
const FAILED_STARTS = [
  {
    name: "a missing binary",
    extra: "binary: /nonexistent/qemu-system-x86_64",
    code: 3,
    message: /QEMU binary '\/nonexistent\/qemu-system-x86_64' not found/,
  },
  {
    name: "a bad QEMU option",
    extra: "args: [-no-such-option]",
    code: 1,
    message: /QEMU failed to start: -no-such-option: invalid option/,
  },
  {
    name: "a disk in a missing folder",
    extra: "storage: [{name: hdd, file: /nonexistent-dir/hdd.qcow2, size: 16M}]",
    code: 1,
    message: /cannot create disk 'hdd' at \/nonexistent-dir\/hdd\.qcow2: No such file or directory/,
  },
  {
    name: "a bad drive for QEMU",
    extra: "args: [-drive, 'file=/nonexistent/x.img,format=raw']",
    code: 1,
    message: /Could not open '\/nonexistent\/x\.img'/,
  },
];

for (const row of FAILED_STARTS) {
  Deno.test(`start with ${row.name} → exit ${row.code}, QEMU's message, status failed, no process`, async () => {
    await withEnv(async (env) => {
      await env.ok(["add", await guestConfig(env, { name: "bad", extra: row.extra })]);
      const res = await env.run(["start", "bad"]);
      assert.equal(res.code, row.code, res.stderr);
      assert.match(res.stderr, row.message);
      const s = await env.status("bad");
      assert.equal(s.status, "failed");
      assert.equal(s.pid, null);
      assert.deepEqual(pidsMentioning(env.root), []);
    });
  });
}

Deno.test("a --wait-for that times out exits 2, marks the VM failed and leaves no process", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "w1" })]);
    const res = await env.run([
      "start",
      "w1",
      "--wait-for",
      "serial:NEVER-PRINTED",
      "--timeout",
      "3",
    ]);
    assert.equal(res.code, 2, res.stderr);
    assert.match(res.stderr, /'NEVER-PRINTED' did not appear/);
    assert.equal((await env.status("w1")).status, "failed");
    assert.deepEqual(pidsMentioning(env.root), []);
  });
});

Deno.test("start --dry-run prints the exact command line and starts nothing", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", await guestConfig(env, { name: "d1" })])).trim();
    const line = await env.ok(["start", "d1", "--dry-run"]);
    assert.match(line, /^qemu-system-x86_64 /);
    for (
      const part of [`-uuid ${id}`, "-name d1", "-daemonize", "-pidfile", "-accel tcg", "-m 192M"]
    ) {
      assert.ok(line.includes(part), `${part} in ${line}`);
    }
    assert.deepEqual(pidsMentioning(env.root), []);
    assert.equal((await env.status("d1")).status, "created");
  });
});

Deno.test("rm --force stops a running VM; --delete-storage removes only disks qvm created", async () => {
  await withEnv(async (env) => {
    const mine = await env.file("own.raw", "precious");
    await env.ok([
      "add",
      await guestConfig(env, {
        name: "rm1",
        extra: `storage: [{name: hdd, size: 16M}, {name: own, type: raw, file: ${mine}}]`,
      }),
    ]);
    await env.ok(["start", "rm1", "--wait-for", "qmp"]);
    const created = JSON.parse(await env.ok(["inspect", "rm1"])).created_files;
    assert.equal(created.length, 1);
    const refused = await env.run(["rm", "rm1"]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is running: use --force/);
    await env.ok(["rm", "rm1", "--force", "--delete-storage", "--yes"]);
    assert.deepEqual(pidsMentioning(env.root), []);
    assert.throws(() => Deno.statSync(created[0]));
    assert.equal(await Deno.readTextFile(mine), "precious");
  });
});

Deno.test("rm keeps storage by default", async () => {
  await withEnv(async (env) => {
    await env.ok([
      "add",
      await guestConfig(env, { name: "keep", extra: "storage: [{name: hdd, size: 16M}]" }),
    ]);
    await env.ok(["start", "keep", "--wait-for", "qmp"]);
    const disk = JSON.parse(await env.ok(["inspect", "keep"])).created_files[0];
    await env.ok(["rm", "keep", "--force"]);
    assert.ok(Deno.statSync(disk).isFile);
  });
});

Deno.test("ls does not wait on a wedged VM longer than its timeout, and calls it unresponsive", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "ok1" })]);
    await env.ok(["add", await guestConfig(env, { name: "wedged" })]);
    await env.ok(["start", "ok1", "--wait-for", "qmp"]);
    await env.ok(["start", "wedged", "--wait-for", "qmp"]);
    const { pid } = await env.status("wedged");
    Deno.kill(pid, "SIGSTOP");
    try {
      const ls = JSON.parse(await env.ok(["ls", "--json"]));
      const byName = Object.fromEntries(
        ls.map((v: { name: string; status: string }) => [v.name, v.status]),
      );
      assert.deepEqual(byName, { ok1: "running", wedged: "unresponsive" });
    } finally {
      Deno.kill(pid, "SIGCONT");
    }
    assert.equal((await env.status("wedged")).status, "running");
  });
});

Deno.test("stop escalates to SIGKILL when QEMU answers nothing (SIGSTOPped)", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "frozen" })]);
    await env.ok(["start", "frozen", "--wait-for", "qmp"]);
    const { pid } = await env.status("frozen");
    Deno.kill(pid, "SIGSTOP");
    const res = await env.run(["stop", "frozen", "--timeout", "3"]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /\(SIGKILL\)/);
    assert.ok(!alive(pid));
  });
});

Deno.test("restart names the duration option it refuses: --stop-timeout out of range is exit 3", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", "--empty", "--name", "rs"]);
    for (const value of ["999999", "0", "=-1"]) {
      const args = value.startsWith("=")
        ? ["restart", "rs", `--stop-timeout${value}`]
        : ["restart", "rs", "--stop-timeout", value];
      const res = await env.run(args);
      assert.equal(res.code, 3, `${args.join(" ")}: ${res.stderr}`);
      assert.match(res.stderr, /^qvm: invalid --stop-timeout '.*': give seconds from 0\.1 to \d+/);
      assert.equal(res.stderr.trim().split("\n").length, 1);
    }
    assert.match(await env.ok(["status", "rs"]), /^rs: created/);
  });
});
