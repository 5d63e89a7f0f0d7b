/**
 * Commands on many VMs: `start`, `stop`, `restart` with several names or `--all`, and `rm --all
 * --force`, run side by side in a bounded pool, one line per VM, an exit code that sums up the
 * failures. Real QEMUs (`-machine none`, a few MiB each, up in a fraction of a second).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { NotFoundError, QvmError, TimeoutError, UsageError } from "../../src/errors.ts";
import { bulkExitCode, inPool, type Outcome } from "../../src/vm/bulk.ts";
import type { VmRecord } from "../../src/state/mod.ts";
import { type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { pidsMentioning } from "../helpers/guest.ts";

/** A config of a VM with no guest at all: QEMU runs, nothing boots. */
async function noneConfig(env: QvmEnv, extra = ""): Promise<string> {
  return await env.file(
    `none${extra ? "-x" : ""}.yaml`,
    ["memory: 16M", "arguments:", "  - machine: none", "  - accel: tcg", extra].join("\n"),
  );
}

/** Adds VMs with no guest; returns their ids by name. */
async function addNone(env: QvmEnv, names: string[]): Promise<Record<string, string>> {
  const config = await noneConfig(env);
  const ids: Record<string, string> = {};
  for (const name of names) ids[name] = (await env.ok(["add", config, "--name", name])).trim();
  return ids;
}

function sortedLines(text: string): string[] {
  return text.trim().split("\n").filter((l) => l !== "").sort();
}

async function statuses(env: QvmEnv): Promise<Record<string, string>> {
  const ls = JSON.parse(await env.ok(["ls", "--json"])) as { name: string; status: string }[];
  return Object.fromEntries(ls.map((v) => [v.name, v.status]));
}

Deno.test("inPool runs at most `limit` at once and keeps the items' order", async () => {
  let running = 0;
  let most = 0;
  const results = await inPool([50, 10, 40, 0, 30, 20, 5], 3, async (ms, i) => {
    running++;
    most = Math.max(most, running);
    await new Promise((r) => setTimeout(r, ms));
    running--;
    return i * 10;
  });
  assert.deepEqual(results, [0, 10, 20, 30, 40, 50, 60]);
  assert.equal(most, 3);
  assert.deepEqual(await inPool([], 8, () => Promise.resolve(1)), []);
});

Deno.test("the exit code of many VMs: 0, the failures' shared code, or 1 when they differ", () => {
  const vm = { id: "x", name: "x" } as VmRecord;
  const ok: Outcome<number> = { vm, ok: true, value: 1 };
  const fail = (error: unknown): Outcome<number> => ({ vm, ok: false, error });
  const cases: [Outcome<number>[], number][] = [
    [[], 0],
    [[ok, ok], 0],
    [[ok, fail(new TimeoutError("t"))], 2],
    [[fail(new TimeoutError("t")), fail(new TimeoutError("u"))], 2],
    [[ok, fail(new NotFoundError("n")), fail(new UsageError("u"))], 3],
    [[fail(new TimeoutError("t")), fail(new NotFoundError("n"))], 1],
    [[fail(new QvmError("q")), fail(new NotFoundError("n"))], 1],
    [[ok, fail(new Error("boom"))], 1],
    [[fail(new Deno.errors.PermissionDenied("no"))], 4],
  ];
  for (const [outcomes, code] of cases) assert.equal(bulkExitCode(outcomes), code);
});

Deno.test("start, stop, restart take several names and --all: one line per VM, side by side", async () => {
  await withEnv(async (env) => {
    const names = ["a", "b", "c", "d"];
    await addNone(env, names);

    const started = await env.run(["start", "a", "b", "c", "d"]);
    assert.equal(started.code, 0, started.stderr);
    assert.deepEqual(
      sortedLines(started.stdout).map((l) => l.replace(/pid \d+/, "pid N")),
      names.map((n) => `started ${n} (pid N)`),
    );
    assert.equal(pidsMentioning(env.root).length, 4);

    // No ACPI device (-machine none): the stop goes straight to QMP quit, not after 70% of 30 s.
    const begun = Date.now();
    const stopped = await env.run(["stop", "a", "b", "c", "a"]);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.ok(Date.now() - begun < 10_000, `stop took ${Date.now() - begun} ms`);
    assert.deepEqual(sortedLines(stopped.stdout), [
      "stopped a (QMP quit)",
      "stopped b (QMP quit)",
      "stopped c (QMP quit)",
    ]);
    assert.deepEqual(await statuses(env), {
      a: "stopped",
      b: "stopped",
      c: "stopped",
      d: "running",
    });

    // --all: start takes the VMs not running, stop and restart the running ones.
    const startAll = await env.run(["start", "--all", "--json"]);
    assert.equal(startAll.code, 0, startAll.stderr);
    const startedJson = JSON.parse(startAll.stdout) as { name: string; status: string }[];
    assert.deepEqual(startedJson.map((v) => [v.name, v.status]), [
      ["a", "running"],
      ["b", "running"],
      ["c", "running"],
    ]);
    const restarted = await env.run(["restart", "--all"]);
    assert.equal(restarted.code, 0, restarted.stderr);
    assert.deepEqual(
      sortedLines(restarted.stdout).map((l) => l.replace(/pid \d+/, "pid N")),
      names.map((n) => `restarted ${n} (stopped by QMP quit; pid N)`),
    );
    assert.equal(pidsMentioning(env.root).length, 4);

    // One VM named: today's output, an object in JSON, not an array.
    const one = JSON.parse(await env.ok(["stop", "d", "--json"]));
    assert.deepEqual(one, { id: one.id, name: "d", status: "stopped", step: "quit" });

    const stopAll = await env.run(["stop", "--all", "--json"]);
    assert.equal(stopAll.code, 0, stopAll.stderr);
    assert.deepEqual(
      (JSON.parse(stopAll.stdout) as { name: string; step: string }[]).map((v) => [v.name, v.step]),
      [["a", "quit"], ["b", "quit"], ["c", "quit"]],
    );
    assert.equal(pidsMentioning(env.root).length, 0);
    const none = await env.run(["stop", "--all"]);
    assert.deepEqual([none.code, none.stdout, none.stderr], [0, "", "no running VMs\n"]);
    const noneJson = await env.run(["restart", "--all", "--json"]);
    assert.deepEqual([noneJson.code, JSON.parse(noneJson.stdout)], [0, []]);

    // rm --all --force removes running and stopped VMs side by side.
    await env.ok(["start", "a", "c"]);
    const removed = await env.run(["rm", "--all", "--force", "--yes"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(sortedLines(removed.stdout), names.map((n) => `removed ${n}`));
    assert.equal(pidsMentioning(env.root).length, 0);
    assert.deepEqual(await statuses(env), {});
  });
});

Deno.test("names and --all are refused together; an unknown name stops nothing", async () => {
  await withEnv(async (env) => {
    await addNone(env, ["a", "b"]);
    await env.ok(["start", "a", "b"]);
    for (const command of ["start", "stop", "restart"]) {
      const both = await env.run([command, "a", "--all"]);
      assert.equal(both.code, 3);
      assert.equal(both.stderr, `qvm: qvm ${command}: give VM names or --all, not both\n`);
      const neither = await env.run([command]);
      assert.equal(neither.code, 3);
      assert.equal(neither.stderr, `qvm: qvm ${command}: missing argument VM (or --all)\n`);
    }
    const unknown = await env.run(["stop", "a", "nope"]);
    assert.equal(unknown.code, 3);
    assert.equal(unknown.stderr, "qvm: no VM with id or name 'nope'\n");
    assert.equal(unknown.stdout, "");
    assert.deepEqual(await statuses(env), { a: "running", b: "running" });
    const dry = await env.run(["start", "a", "b", "--dry-run"]);
    assert.deepEqual([dry.code, dry.stderr], [3, "qvm: qvm start: --dry-run takes one VM\n"]);
  });
});

Deno.test("a failure is its VM's line, the others go on; exit code: theirs if shared, else 1", async () => {
  await withEnv(async (env) => {
    const ids = await addNone(env, ["a", "b"]);
    const missing = join(env.root, "no-such-qemu");
    await env.ok(["add", await noneConfig(env, `binary: ${missing}`), "--name", "c"]);

    // One kind of failure: its exit code (3, the binary is not there).
    const first = await env.run(["start", "a", "b", "c"]);
    assert.equal(first.code, 3, first.stderr);
    assert.deepEqual(
      sortedLines(first.stdout).map((l) => l.replace(/pid \d+/, "pid N")),
      ["started a (pid N)", "started b (pid N)"],
    );
    assert.equal(
      first.stderr,
      `qvm: c: QEMU binary '${missing}' not found (install qemu-system-x86 or set binary:)\n`,
    );

    // Two kinds (a is already running: 1; c: 3): exit 1, and each failure in the JSON array.
    const mixed = await env.run(["start", "a", "c", "--json"]);
    assert.equal(mixed.code, 1, mixed.stderr);
    const results = JSON.parse(mixed.stdout) as Record<string, unknown>[];
    assert.deepEqual(results.map((r) => [r.name, r.exit_code]), [["a", 1], ["c", 3]]);
    assert.match(String(results[0].error), /^VM 'a' is already running/);
    assert.match(mixed.stderr, /^qvm: a: VM 'a' is already running/m);

    // A stop that cannot take b's lock times out (2); a is stopped all the same.
    const lock = await Deno.open(join(env.runtimeDir, `${ids.b}.lock`), {
      read: true,
      write: true,
    });
    try {
      await lock.lock(true);
      const stop = await env.run(["stop", "a", "b", "--timeout", "1"]);
      assert.equal(stop.code, 2, stop.stderr);
      assert.equal(stop.stdout, "stopped a (QMP quit)\n");
      assert.equal(
        stop.stderr,
        "qvm: b: VM 'b' is busy: another qvm command holds its lock\n",
      );
    } finally {
      lock.close();
    }
    assert.deepEqual(await statuses(env), { a: "stopped", b: "running", c: "failed" });
  });
});
