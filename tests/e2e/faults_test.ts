/**
 * Fault injection: real qvm subprocesses killed (SIGKILL, SIGTERM) at many points of start, stop,
 * rm --force and a live snapshot. Afterwards there is at most one QEMU per VM, `status` tells the
 * truth, a second start never doubles the QEMU, stop stops it, and the database is intact.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { alive, guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";

/** Starts `qvm ARGS` and kills it with `signal` after `delayMs`; resolves when it has exited. */
async function killAfter(
  env: QvmEnv,
  args: string[],
  options: { delayMs: number; signal: Deno.Signal },
): Promise<void> {
  const child = env.command(args, { stdio: "null" }).spawn();
  await new Promise((r) => setTimeout(r, options.delayMs));
  try {
    child.kill(options.signal);
  } catch { /* already done */ }
  await child.status;
}

/** Live QEMU processes (not zombies) carrying `-uuid id`. */
function qemusOf(id: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
      const at = argv.indexOf("-uuid");
      if (at !== -1 && argv[at + 1] === id && argv[0].includes("qemu-system")) {
        if (alive(Number(entry.name))) pids.push(Number(entry.name));
      }
    } catch { /* gone */ }
  }
  return pids;
}

function integrity(env: QvmEnv): string {
  const db = new DatabaseSync(join(env.dataDir, "qvm.db"), { readOnly: true });
  try {
    return String(Object.values(db.prepare("PRAGMA integrity_check").get()!)[0]);
  } finally {
    db.close();
  }
}

/** Asserts at most one QEMU for the VM and a status that matches it; returns that QEMU's pid. */
async function assertTruthful(env: QvmEnv, id: string, when: string): Promise<number | undefined> {
  // A QEMU in the middle of -daemonize is briefly two processes: let it settle.
  await eventually(() => qemusOf(id).length <= 1, { timeout: 5000 });
  const qemus = qemusOf(id);
  assert.ok(qemus.length <= 1, `${when}: ${qemus.length} QEMUs for one VM`);
  const res = await env.run(["status", id, "--json"]);
  if (res.code === 3 && qemus.length === 0) return undefined; // removed, and nothing left running
  assert.equal(res.code, 0, `${when}: ${res.stderr}`);
  const status = JSON.parse(res.stdout);
  if (qemus.length === 1) {
    assert.notEqual(status.status, "stopped", `${when}: QEMU ${qemus[0]} runs`);
    assert.notEqual(status.status, "failed", `${when}: QEMU ${qemus[0]} runs`);
    assert.equal(status.pid, qemus[0], `${when}: status names pid ${status.pid}`);
  } else {
    assert.ok(
      ["stopped", "failed", "created"].includes(status.status),
      `${when}: no QEMU runs but status is ${status.status}`,
    );
  }
  assert.equal(integrity(env), "ok", when);
  return qemus[0];
}

/** After a fault: a second start gives one QEMU, stop stops it, nothing is left. */
async function assertRecovers(env: QvmEnv, id: string, when: string): Promise<void> {
  await env.run(["start", id, "--wait-for", "process", "--timeout", "30"]);
  await eventually(() => qemusOf(id).length <= 1, { timeout: 5000 });
  assert.equal(qemusOf(id).length, 1, `${when}: a start after the fault must leave one QEMU`);
  await assertTruthful(env, id, `${when}, restarted`);
  const stop = await env.run(["stop", id, "--force"]);
  assert.equal(stop.code, 0, `${when}: ${stop.stderr}`);
  assert.match(stop.stdout, /stopped/, `${when}: stop must find the QEMU`);
  assert.deepEqual(qemusOf(id), [], `${when}: stop --force left a QEMU`);
  assert.equal(integrity(env), "ok", when);
}

Deno.test("a start killed at any point leaves a QEMU qvm finds: adopted, never doubled", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", await guestConfig(env, { name: "k1" })])).trim();
    const cases: [number, Deno.Signal][] = [
      [0, "SIGKILL"],
      [60, "SIGKILL"],
      [120, "SIGKILL"],
      [200, "SIGKILL"],
      [350, "SIGKILL"],
      [600, "SIGKILL"],
      [1000, "SIGKILL"],
      [150, "SIGTERM"],
      [400, "SIGTERM"],
    ];
    for (const [delayMs, signal] of cases) {
      const when = `start ${signal} after ${delayMs} ms`;
      await killAfter(env, ["start", "k1", "--wait-for", "process"], { delayMs, signal });
      await new Promise((r) => setTimeout(r, 300));
      await assertTruthful(env, id, when);
      await assertRecovers(env, id, when);
    }
  });
});

Deno.test("stop and rm --force killed at any point leave the truth and at most one QEMU", async () => {
  await withEnv(async (env) => {
    const config = await guestConfig(env, { name: "k2", acpi: false });
    for (
      const [command, delayMs, signal] of [
        ["stop", 100, "SIGKILL"],
        ["stop", 400, "SIGKILL"],
        ["stop", 900, "SIGTERM"],
        ["rm", 150, "SIGKILL"],
        ["rm", 500, "SIGKILL"],
      ] as [string, number, Deno.Signal][]
    ) {
      const when = `${command} ${signal} after ${delayMs} ms`;
      let id = (await env.run(["status", "k2", "--json"])).stdout;
      if (!id) id = (await env.ok(["add", config])).trim();
      else id = JSON.parse(id).id;
      await env.ok(["start", "k2", "--wait-for", "qmp"]);
      const args = command === "stop" ? ["stop", "k2", "--timeout", "3"] : ["rm", "k2", "--force"];
      await killAfter(env, args, { delayMs, signal });
      const pid = await assertTruthful(env, id, when);
      if (pid !== undefined) {
        const stop = await env.run(["stop", "k2", "--force"]);
        assert.equal(stop.code, 0, `${when}: ${stop.stderr}`);
        assert.ok(!alive(pid), `${when}: stop left QEMU ${pid}`);
      }
      assert.deepEqual(qemusOf(id), [], when);
    }
  });
});

Deno.test("a live snapshot killed midway leaves a running, truthful VM", async () => {
  await withEnv(async (env) => {
    const config = await guestConfig(env, {
      name: "k3",
      extra: "storage:\n  - name: hdd\n    size: 64M\n    type: qcow2\n    interface: virtio",
    });
    const id = (await env.ok(["add", config])).trim();
    await env.ok(["start", "k3", ...WAIT_READY]);
    for (const delayMs of [150, 400, 800]) {
      const when = `snapshot create --live SIGKILL after ${delayMs} ms`;
      await killAfter(env, ["snapshot", "create", "k3", `s${delayMs}`, "--live"], {
        delayMs,
        signal: "SIGKILL",
      });
      const pid = await assertTruthful(env, id, when);
      assert.ok(pid !== undefined, `${when}: the VM must still run`);
    }
    await env.ok(["stop", "k3", "--force"]);
    assert.deepEqual(qemusOf(id), []);
  });
});

Deno.test("a QEMU whose row says it is not running is adopted by status, pid file or not", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", await guestConfig(env, { name: "k4" })])).trim();
    await env.ok(["start", "k4", "--wait-for", "qmp"]);
    const [pid] = qemusOf(id);
    for (const stored of ["stopped", "failed", "created"]) {
      const db = new DatabaseSync(join(env.dataDir, "qvm.db"));
      try {
        db.prepare("UPDATE vm_instances SET status = ?, pid = NULL WHERE id = ?").run(stored, id);
      } finally {
        db.close();
      }
      if (stored === "created") Deno.removeSync(join(env.runtimeDir, `${id}.pid`));
      assert.equal(await assertTruthful(env, id, `a QEMU recorded as ${stored}`), pid);
      const ls = JSON.parse(await env.ok(["ls", "--json"]));
      assert.equal(ls[0].status, "running", `ls after status, recorded as ${stored}`);
    }
    await env.ok(["stop", "k4", "--force"]);
    assert.deepEqual(qemusOf(id), []);
  });
});
