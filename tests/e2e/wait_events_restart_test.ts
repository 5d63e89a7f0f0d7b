import assert from "node:assert/strict";
import { join } from "node:path";
import { type QvmEnv, withEnv } from "../helpers/qvm.ts";
import {
  alive,
  GUEST_READY_MARKER,
  guestConfig,
  pidsMentioning,
  WAIT_READY,
} from "../helpers/guest.ts";
import { eventually, holdsLock, socketHasClient } from "../helpers/wait.ts";
import { parseWaitTarget as parseTarget } from "../../src/vm/ready.ts";
import { verdict } from "../../src/vm/wait.ts";
import { formatEvent } from "../../src/cli/events.ts";
import { eventLine } from "../../src/vm/events.ts";

/** Starts `qvm ARGS` in the background; its output is read when it ends. */
function spawnQvm(env: QvmEnv, args: string[]) {
  const child = env.command(args).spawn();
  const decoder = new TextDecoder();
  let stdout = "";
  const reading = (async () => {
    for await (const chunk of child.stdout) stdout += decoder.decode(chunk, { stream: true });
  })();
  const stderr = new Response(child.stderr).text();
  return {
    child,
    /** What it printed on stdout so far. */
    get stdout() {
      return stdout;
    },
    async done() {
      const s = await child.status;
      await reading;
      return { code: s.code, stdout, stderr: await stderr };
    },
  };
}

Deno.test("wait --for: the table of reached, still possible and unreachable", () => {
  assert.deepEqual(parseTarget("serial:login:"), { kind: "serial", text: "login:" });
  assert.equal(parseTarget("serial:"), undefined);
  assert.equal(parseTarget("booted"), undefined);
  const running = parseTarget("running")!;
  const stopped = parseTarget("stopped")!;
  const ssh = parseTarget("ssh")!;
  assert.equal(verdict(running, "running"), true);
  assert.equal(verdict(running, "stopped"), undefined); // someone may start it
  assert.equal(verdict(running, "paused"), undefined);
  assert.match(verdict(running, "guest-panicked") as string, /guest-panicked/);
  assert.equal(verdict(stopped, "failed"), true);
  assert.equal(verdict(stopped, "running"), undefined);
  assert.match(verdict(ssh, "stopped") as string, /stopped/);
  assert.equal(verdict(ssh, "starting"), undefined);
  assert.match(verdict(parseTarget("serial:x")!, "failed") as string, /failed/);
});

Deno.test("wait: reached (0), timed out (2), and can't get there (1), against a real guest", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "w1" })]);
    // Nobody starts it: a timeout.
    const early = await env.run(["wait", "w1", "--for", "running", "--timeout", "1"]);
    assert.equal(early.code, 2, early.stderr);
    assert.match(early.stderr, /did not reach running in time \(status: created\)/);
    // Waiting for a stopped VM to answer over ssh: it cannot get there by itself.
    const ssh = await env.run(["wait", "w1", "--for", "ssh", "--timeout", "30"]);
    assert.equal(ssh.code, 1, ssh.stderr);
    assert.match(ssh.stderr, /cannot reach ssh: it is created/);
    // Started while waiting: reached.
    const running = spawnQvm(env, ["wait", "w1", "--for", "running", "--json"]);
    // An earlier run's output does not count: only what this run of QEMU prints.
    const id = (await env.status("w1")).id;
    const log = join(env.dataDir, "logs", `${id}.serial.log`);
    await Deno.mkdir(join(env.dataDir, "logs"), { recursive: true, mode: 0o700 });
    await Deno.writeTextFile(log, "TEXT-OF-AN-EARLIER-RUN\n", { mode: 0o600 });
    await env.ok(["start", "w1", "--wait-for", "process"]);
    const reached = await running.done();
    assert.equal(reached.code, 0, reached.stderr);
    assert.equal(JSON.parse(reached.stdout).reached, "running");
    // Text this run printed before `wait` was called counts (the guest prints it once).
    await env.ok(["wait", "w1", "--for", `serial:${GUEST_READY_MARKER}`, "--timeout", "60"]);
    const again = await env.run(["wait", "w1", "--for", `serial:${GUEST_READY_MARKER}`]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, `w1: serial:${GUEST_READY_MARKER}\n`);
    const earlier = await env.run([
      "wait",
      "w1",
      "--for",
      "serial:TEXT-OF-AN-EARLIER-RUN",
      "--timeout",
      "1",
    ]);
    assert.equal(earlier.code, 2, earlier.stderr);
    // A running VM with no agent channel never answers over the agent.
    const agent = await env.run(["wait", "w1", "--for", "agent", "--timeout", "5"]);
    assert.equal(agent.code, 1, agent.stderr);
    assert.match(agent.stderr, /no guest agent channel/);
    // Nor do `ip` and `exec` reach an agent: the same one line, exit 3.
    for (const args of [["ip", "w1"], ["exec", "w1", "--", "true"]]) {
      const res = await env.run(args);
      assert.equal(res.code, 3, res.stderr);
      assert.equal(res.stderr, "qvm: VM 'w1' has no guest agent channel: set guest_agent: true\n");
    }
    // Text that never comes: a timeout; then the VM stops while waited on: exit 1, not 2.
    const never = await env.run(["wait", "w1", "--for", "serial:NEVER-PRINTED", "--timeout", "1"]);
    assert.equal(never.code, 2, never.stderr);
    const cut = spawnQvm(env, ["wait", "w1", "--for", "serial:NEVER-PRINTED", "--timeout", "60"]);
    const gone = spawnQvm(env, ["wait", "w1", "--for", "stopped"]);
    await env.ok(["stop", "w1"]);
    const cutRes = await cut.done();
    assert.equal(cutRes.code, 1, cutRes.stderr);
    assert.match(cutRes.stderr, /cannot reach serial:NEVER-PRINTED: it is stopped/);
    assert.equal((await gone.done()).code, 0);
    assert.equal((await env.run(["wait", "w1", "--for", "stopped", "--timeout", "1"])).code, 0);
    const sshStopped = await env.run(["wait", "w1", "--for", "ssh", "--timeout", "30"]);
    assert.equal(sshStopped.code, 1, sshStopped.stderr);
    assert.match(sshStopped.stderr, /cannot reach ssh: it is stopped/);
    assert.equal((await env.run(["wait", "nosuch", "--for", "stopped"])).code, 3);
    assert.equal((await env.run(["wait", "w1", "--for", "booted"])).code, 3);
  });
});

Deno.test("wait for serial text the guest prints as it powers off: reached (0), not can't get there", async () => {
  await withEnv(async (env) => {
    // QEMU traces each QMP request it reads to its log: the wait's first look shows there.
    const extra = "  - trace: enable=handle_qmp_command";
    const id = (await env.ok(["add", await guestConfig(env, { name: "w2", extra })])).trim();
    await env.ok(["start", "w2", ...WAIT_READY]);
    const qemuLog = join(env.dataDir, "logs", `${id}.qemu.log`);
    const before = (await Deno.readTextFile(qemuLog)).length;
    // The kernel's last line before QEMU exits: the VM is stopped by the next look.
    const last = spawnQvm(env, ["wait", "w2", "--for", "serial:Power down", "--timeout", "60"]);
    assert.ok(
      await eventually(
        async () => (await Deno.readTextFile(qemuLog)).slice(before).includes('"query-status"'),
        { timeout: 30_000 },
      ),
      "the wait never looked at the running VM",
    );
    await env.ok(["stop", "w2"]);
    const res = await last.done();
    assert.equal(res.code, 0, res.stderr);
    // A wait begun after the stop does not count that run's output.
    const after = await env.run(["wait", "w2", "--for", "serial:Power down", "--timeout", "5"]);
    assert.equal(after.code, 1, after.stderr);
  });
});

Deno.test("events: QMP events as JSON lines on their own monitor, ending when the VM stops", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "e1" })]);
    const notRunning = await env.run(["events", "e1"]);
    assert.equal(notRunning.code, 3, notRunning.stderr);
    const started = await env.run(["start", "e1", ...WAIT_READY]);
    assert.equal(started.code, 0, started.stderr);
    const id = (await env.status("e1")).id;
    const events = spawnQvm(env, ["events", "e1", "--json"]);
    // Connected once QEMU serves a client on the event monitor (one at a time).
    assert.ok(await eventually(() => socketHasClient(join(env.runtimeDir, `${id}.evt`))));
    await env.ok(["qmp", "pause", "e1"]);
    assert.ok(
      await eventually(() => events.stdout.includes('"STOP"'), { timeout: 10_000 }),
      events.stdout,
    );
    // While events are followed, the command socket and the status socket stay free.
    assert.equal((await env.status("e1")).qemu_status, "paused");
    const q = JSON.parse(await env.ok(["qmp", "run", "e1", "query-status", "--json"]));
    assert.equal(q.status ?? q.return?.status, "paused");
    // A second reader is refused with one line naming the monitor; the first keeps reading.
    const second = await env.run(["events", "e1"]);
    assert.equal(second.code, 1, second.stderr);
    assert.equal(
      second.stderr.trim(),
      "qvm: the event monitor of VM 'e1' is taken (is another 'qvm events' following it?)",
    );
    await env.ok(["qmp", "resume", "e1"]);
    await env.ok(["stop", "e1"]);
    const res = await events.done();
    assert.equal(res.code, 0, res.stderr);
    const lines = res.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.event), ["STOP", "RESUME", "POWERDOWN", "SHUTDOWN"]);
    assert.deepEqual(lines[3].data, { guest: true, reason: "guest-shutdown" });
    for (const line of lines) {
      assert.deepEqual(Object.keys(line), ["time", "event", "data"]);
      assert.ok(!Number.isNaN(Date.parse(line.time)));
    }
    assert.ok(!(await Deno.lstat(join(env.runtimeDir, `${id}.evt`)).catch(() => null)));
  });
});

Deno.test("events --follow waits for the start and goes on through a restart", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", await guestConfig(env, { name: "e2" })])).trim();
    const events = spawnQvm(env, ["events", "e2", "--follow"]);
    await env.ok(["start", "e2", ...WAIT_READY]);
    await env.ok(["restart", "e2", ...WAIT_READY]);
    // The restarted QEMU's events come through the new run's monitor, once it serves the follower.
    assert.ok(await eventually(() => socketHasClient(join(env.runtimeDir, `${id}.evt`))));
    await env.ok(["qmp", "pause", "e2"]);
    assert.ok(
      await eventually(() => / STOP\b/.test(events.stdout), { timeout: 10_000 }),
      events.stdout,
    );
    await env.ok(["stop", "e2", "--force"]);
    const res = await events.done();
    assert.equal(res.code, 0, res.stderr);
    const names = res.stdout.trim().split("\n").map((l) => l.split(" ")[1]);
    assert.ok(names.includes("SHUTDOWN"), res.stdout);
    assert.equal(names.at(-1), "STOP", res.stdout);
  });
});

Deno.test("event lines: stable JSON keys and a readable flat form", () => {
  const line = eventLine({
    event: "DEVICE_DELETED",
    data: { device: "nic1", path: "/machine/peripheral/nic1" },
    timestamp: { seconds: 1_700_000_000, microseconds: 250_000 },
  } as never);
  assert.deepEqual(line, {
    time: "2023-11-14T22:13:20.250Z",
    event: "DEVICE_DELETED",
    data: { device: "nic1", path: "/machine/peripheral/nic1" },
  });
  assert.equal(
    formatEvent({ time: "T", event: "JOB_STATUS_CHANGE", data: { id: "j1", status: "running" } }),
    "T JOB_STATUS_CHANGE id=j1 status=running",
  );
  assert.equal(formatEvent({ time: "T", event: "X", data: { a: { b: 1 } } }), "T X a.b=1");
});

Deno.test("restart: stop by the usual escalation, then start, under one lock; never two QEMUs", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "r1" })]);
    // Not running: restart just starts it.
    assert.match(
      await env.ok(["restart", "r1", ...WAIT_READY]),
      /restarted r1 \(was not running; pid \d+\)/,
    );
    const { pid: before, id } = await env.status("r1");
    const restart = spawnQvm(env, ["restart", "r1", ...WAIT_READY, "--json"]);
    // A start racing the restart waits for its lock, then finds the VM running: refused.
    const lock = join(env.runtimeDir, `${id}.lock`);
    assert.ok(await eventually(() => holdsLock(restart.child.pid, lock)), "restart took no lock");
    const racing = await env.run(["start", "r1", "--timeout", "30"]);
    const res = await restart.done();
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout);
    assert.equal(out.stopped_by, "acpi");
    assert.notEqual(out.pid, before);
    assert.ok(!alive(before));
    assert.equal(racing.code, 1, racing.stderr);
    assert.match(racing.stderr, /already running/);
    assert.deepEqual(pidsMentioning(env.root), [out.pid]);
    assert.equal((await env.status("r1")).status, "running");
    // A wait the VM can never satisfy (no port 22 forward, no agent channel) stops nothing.
    for (const what of ["ssh", "agent"]) {
      const refused = await env.run(["restart", "r1", "--wait-for", what, "--timeout", "5"]);
      assert.equal(refused.code, 3, refused.stderr);
      assert.equal((await env.status("r1")).pid, out.pid);
    }
    // A start that times out after the stop leaves the VM failed, with no QEMU behind.
    const timedOut = await env.run([
      "restart",
      "r1",
      "--wait-for",
      "serial:NEVER-PRINTED",
      "--timeout",
      "2",
    ]);
    assert.equal(timedOut.code, 2, timedOut.stderr);
    assert.deepEqual(pidsMentioning(env.root), []);
    assert.equal((await env.status("r1")).status, "failed");
    assert.equal((await env.run(["restart", "r1", "--wait-for", "soon"])).code, 3);
  });
});

Deno.test("events shows a live snapshot's job going through its states", async () => {
  await withEnv(async (env) => {
    const extra = "storage:\n  - name: hdd\n    size: 64M\n";
    const id = (await env.ok(["add", await guestConfig(env, { name: "e3", extra })])).trim();
    await env.ok(["start", "e3", ...WAIT_READY]);
    const events = spawnQvm(env, ["events", "e3", "--json"]);
    assert.ok(await eventually(() => socketHasClient(join(env.runtimeDir, `${id}.evt`))));
    await env.ok(["snapshot", "create", "e3", "s1"]);
    assert.ok(
      await eventually(() => events.stdout.includes('"concluded"'), { timeout: 10_000 }),
      events.stdout,
    );
    await env.ok(["stop", "e3", "--force"]);
    const res = await events.done();
    assert.equal(res.code, 0, res.stderr);
    const jobs = res.stdout.trim().split("\n").map((l) => JSON.parse(l))
      .filter((l) => l.event === "JOB_STATUS_CHANGE");
    const states = jobs.map((j) => j.data.status);
    for (const s of ["created", "running", "concluded"]) {
      assert.ok(states.includes(s), states.join());
    }
    assert.match(jobs[0].data.id, /^qvm-create-/);
  });
});

Deno.test("events on a QEMU without the event monitor falls back to polled run states", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "e4" })]);
    await env.ok(["start", "e4", ...WAIT_READY]);
    const { id } = await env.status("e4");
    // As a QEMU started by a qvm from before the event monitor: no <id>.evt to connect to.
    await Deno.remove(join(env.runtimeDir, `${id}.evt`));
    const events = spawnQvm(env, ["events", "e4"]);
    assert.ok(
      await eventually(() => / STATUS status=running/.test(events.stdout), { timeout: 10_000 }),
    );
    await env.ok(["qmp", "pause", "e4"]);
    assert.ok(
      await eventually(() => / STATUS status=paused/.test(events.stdout), { timeout: 10_000 }),
    );
    await env.ok(["stop", "e4", "--force"]);
    const res = await events.done();
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /without an event monitor/);
  });
});
