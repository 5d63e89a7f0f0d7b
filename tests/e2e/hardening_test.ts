/**
 * Regression tests for faults a hostile user found: parallel applies, shared disks, untracked
 * QEMUs, misleading start errors, unbounded timeouts, global flags before subcommands, lock files
 * left by rm, configs missing keys, and stop against paused, powered-off or half-reachable VMs.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { exists, type QvmEnv, withEnv } from "../helpers/qvm.ts";
import {
  alive,
  GUEST_SHUTDOWN,
  guestConfig,
  shutdownCauses,
  WAIT_READY,
} from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";
import { execUser } from "../../src/vm/exec.ts";
import { planStop } from "../../src/vm/stop.ts";

function sql(env: QvmEnv, statement: string, ...params: (string | number | null)[]): void {
  const db = new DatabaseSync(join(env.dataDir, "qvm.db"));
  try {
    db.prepare(statement).run(...params);
  } finally {
    db.close();
  }
}

async function inspectConfig(env: QvmEnv, vm: string) {
  return JSON.parse(await env.ok(["inspect", vm, "--json"])).config;
}

Deno.test("parallel applies to one VM all land", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", "--empty", "--name", "p5"]);
    for (let round = 0; round < 4; round++) {
      const memory = `${256 + round * 64}M`;
      const cpu = String(2 + round);
      const [a, b] = await Promise.all([
        env.run(["apply", "p5", "--memory", memory]),
        env.run(["apply", "p5", "--cpu", cpu]),
      ]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      const config = await inspectConfig(env, "p5");
      assert.equal(config.memory, memory, `round ${round}: memory lost`);
      assert.equal(config.cpu, Number(cpu), `round ${round}: cpu lost`);
    }
  });
});

Deno.test("ten parallel applies that create one VM give one VM with all ten changes", async () => {
  await withEnv(async (env) => {
    const files = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        env.file(
          `s${i}.yaml`,
          `storage:\n  - name: disk${i}\n    size: 16M\n    type: qcow2\n    interface: virtio\n`,
        )),
    );
    const results = await Promise.all(files.map((f) => env.run(["apply", "fresh", f])));
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const ls = JSON.parse(await env.ok(["ls", "--json"]));
    assert.equal(ls.length, 1);
    const names = (await inspectConfig(env, "fresh")).storage.map((s: { name: string }) => s.name);
    assert.deepEqual(names.sort(), Array.from({ length: 10 }, (_, i) => `disk${i}`).sort());
  });
});

Deno.test("rm --delete-storage keeps a disk another VM names as its disk or backing file", async () => {
  await withEnv(async (env) => {
    const shared = join(env.root, "images", "d.qcow2");
    const base = join(env.root, "images", "base.qcow2");
    await Deno.mkdir(join(env.root, "images"));
    const disk = (name: string, file: string) =>
      `storage:\n  - name: ${name}\n    file: ${file}\n    size: 16M\n    type: qcow2\n` +
      `    interface: virtio\n`;
    await env.ok(["add", await env.file("a.yaml", disk("hdd", shared)), "--name", "a"]);
    await env.ok(["add", await env.file("c.yaml", disk("hdd", base)), "--name", "c"]);
    await env.ok(["add", await env.file("b.yaml", disk("hdd", shared)), "--name", "b"]);
    // a and c create their disks (the start itself fails: there is no kernel, only disks).
    for (const vm of ["a", "c"]) {
      await env.run(["start", vm, "--wait-for", "process", "--dry-run"]);
      await env.run(["start", vm, "--wait-for", "process"]);
      await env.run(["stop", vm, "--force"]);
    }
    assert.ok(exists(shared) && exists(base), "the starts must have created both disks");
    // A backing file must exist when a VM naming it is defined.
    await env.ok([
      "add",
      await env.file(
        "d.yaml",
        `storage:\n  - name: top\n    file: ${join(env.root, "top.qcow2")}\n    size: 16M\n` +
          `    type: qcow2\n    interface: virtio\n    backing_file: ${base}\n` +
          `    backing_format: qcow2\n`,
      ),
      "--name",
      "d",
    ]);
    const rmA = await env.run(["rm", "a", "--delete-storage", "--yes"]);
    assert.equal(rmA.code, 0, rmA.stderr);
    assert.ok(exists(shared), "a disk VM b still uses was deleted");
    assert.match(rmA.stderr, /kept .*d\.qcow2: VM 'b' uses it/);
    const rmC = await env.run(["rm", "c", "--delete-storage", "--yes", "--json"]);
    assert.equal(rmC.code, 0, rmC.stderr);
    assert.ok(exists(base), "a backing file VM d names was deleted");
    assert.deepEqual(JSON.parse(rmC.stdout)[0].kept_files.map((k: { file: string }) => k.file), [
      base,
    ]);
  });
});

Deno.test("rm --delete-storage keeps a disk another VM names in its QEMU options or its image's backing chain", async () => {
  await withEnv(async (env) => {
    const images = join(env.root, "images");
    await Deno.mkdir(images);
    const raw = join(images, "r.img");
    const hd = join(images, "h.qcow2");
    const base = join(images, "base.qcow2");
    const own = join(images, "own.qcow2");
    const item = (name: string, type: string, file: string) =>
      `  - name: ${name}\n    file: ${file}\n    size: 16M\n    type: ${type}\n`;
    await env.ok([
      "add",
      await env.file(
        "a.yaml",
        "storage:\n" + item("r", "raw", raw) + item("h", "qcow2", hd) +
          item("base", "qcow2", base) + item("own", "qcow2", own),
      ),
      "--name",
      "a",
    ]);
    // The start creates the disks (and then fails: there is no kernel, only disks).
    await env.run(["start", "a", "--wait-for", "process"]);
    await env.run(["stop", "a", "--force"]);
    assert.ok([raw, hd, base, own].every(exists), "the start must have created the disks");
    // b's overlay names base.qcow2 in its image header; b's config allows it only as a file a
    // backing chain may name.
    const overlay = join(env.root, "overlay.qcow2");
    const img = await new Deno.Command("qemu-img", {
      args: ["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay],
    }).output();
    assert.equal(img.code, 0, new TextDecoder().decode(img.stderr));
    await env.ok([
      "add",
      await env.file(
        "b.yaml",
        `storage:\n  - name: top\n    file: ${overlay}\n    type: qcow2\n` +
          `allowed_backing_files: [${base}]\n` +
          `arguments:\n  - drive: file=${raw},format=raw,if=virtio\n  - hdb: ${hd}\n`,
      ),
      "--name",
      "b",
    ]);
    const rm = await env.run(["rm", "a", "--delete-storage", "--yes", "--json"]);
    assert.equal(rm.code, 0, rm.stderr);
    for (const file of [raw, hd, base]) {
      assert.ok(exists(file), `${file}, which b uses, was deleted`);
    }
    assert.ok(!exists(own), "a disk no other VM uses was kept");
    const kept = JSON.parse(rm.stdout)[0].kept_files as { file: string; reason: string }[];
    assert.deepEqual(kept.map((k) => k.file).sort(), [base, hd, raw].sort());
    assert.ok(kept.every((k) => /VM 'b' uses it/.test(k.reason)), JSON.stringify(kept));
  });
});

Deno.test("rm leaves no lock file behind, and doctor finds nothing about it", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", await guestConfig(env, { name: "r1" })])).trim();
    await env.ok(["start", "r1", "--wait-for", "qmp"]);
    await env.ok(["rm", "r1", "--force", "--yes"]);
    assert.ok(!exists(join(env.runtimeDir, `${id}.lock`)), "rm left the VM's lock file");
    const doctor = JSON.parse((await env.run(["doctor", "--json"])).stdout);
    const problems = doctor.checks.filter((c: { status: string; what: string }) =>
      c.status === "problem" && c.what.includes(id)
    );
    assert.deepEqual(problems, []);
  });
});

Deno.test("a QEMU the database lost track of is reported by doctor and adopted by --fix", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", await guestConfig(env, { name: "u1" })])).trim();
    await env.ok(["start", "u1", "--wait-for", "qmp"]);
    const { pid } = await env.status("u1");
    sql(env, "UPDATE vm_instances SET status = 'stopped', pid = NULL WHERE id = ?", id);
    const report = await env.run(["doctor", "--json"]);
    assert.equal(report.code, 1);
    const untracked = JSON.parse(report.stdout).checks.find((c: { check: string }) =>
      c.check === "untracked_qemu"
    );
    assert.ok(untracked, report.stdout);
    assert.match(untracked.what, new RegExp(`QEMU process ${pid} is VM 'u1'`));
    await env.run(["doctor", "--fix"]);
    const after = await env.status("u1");
    assert.equal(after.status, "running");
    assert.equal(after.pid, pid);
    // And the next start refuses rather than booting a second QEMU.
    sql(env, "UPDATE vm_instances SET status = 'failed', pid = NULL WHERE id = ?", id);
    const again = await env.run(["start", "u1", "--wait-for", "process"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already running \(pid \d+\)/);
    assert.ok(alive(pid));
    assert.match(await env.ok(["stop", "u1", "--force"]), /stopped u1/);
    assert.ok(!alive(pid));
  });
});

Deno.test("a failed start shows QEMU's error line, with its warnings only as detail", async () => {
  await withEnv(async (env) => {
    // Default accelerator (KVM, then TCG): QEMU warns about CPU features before the real error.
    const config = await env.file("nok.yaml", "arguments:\n  - kernel: /nonexistent/vmlinuz\n");
    await env.ok(["add", config, "--name", "nok"]);
    const res = await env.run(["start", "nok"]);
    assert.equal(res.code, 1);
    const first = res.stderr.split("\n")[0];
    assert.match(first, /^qvm: QEMU failed to start: .*\/nonexistent\/vmlinuz/);
    assert.doesNotMatch(first, /warning/);
    const s = await env.status("nok");
    assert.equal(s.status, "failed");
    assert.doesNotMatch(s.stop_reason, /warning/);
    assert.match(s.stop_reason, /nonexistent/);
  });
});

Deno.test("durations are bounded: a huge or odd --timeout is exit 3 and starts nothing", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "t1" })]);
    for (
      const args of [
        ["start", "t1", "--timeout", "3000000"],
        ["start", "t1", "--timeout", "0"],
        ["start", "t1", "--timeout", "1e9"],
        ["start", "t1", "--timeout=-5"],
        ["stop", "t1", "--timeout", "99999999"],
        ["snapshot", "create", "t1", "s1", "--timeout", "86401"],
        ["qmp", "run", "t1", "query-status", "--timeout", "Infinity"],
        ["qmp", "keys", "t1", "a", "--hold-time", "99999999999"],
      ]
    ) {
      const res = await env.run(args);
      assert.equal(res.code, 3, `${args.join(" ")}: ${res.stderr}`);
      assert.match(res.stderr, /^qvm: invalid --(timeout|hold-time) .* from \d/, args.join(" "));
      assert.equal(res.stderr.trim().split("\n").length, 1);
    }
    assert.equal((await env.status("t1")).status, "created");
    const ok = await env.run(["start", "t1", "--timeout", "86400", "--wait-for", "qmp"]);
    assert.equal(ok.code, 0, ok.stderr);
    await env.ok(["stop", "t1", "--force"]);
  });
});

Deno.test("global flags before a command with subcommands reach it", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", "--empty", "--name", "g1"]);
    const base = ["--data-dir", env.dataDir, "--runtime-dir", env.runtimeDir];
    const other = { QVM_DATA_DIR: join(env.root, "elsewhere"), QVM_RUNTIME_DIR: env.runtimeDir };
    for (
      const args of [
        [...base, "storage", "ls"],
        ["storage", ...base, "ls"],
        ["--json", ...base, "storage", "ls", "g1"],
        [...base, "ls"],
      ]
    ) {
      const res = await env.run(args, { env: other });
      assert.equal(res.code, 0, `${args.join(" ")}: ${res.stderr}`);
    }
    // These reach the VM in the given data dir (it has no drives, and it is not running).
    const snap = await env.run([...base, "snapshot", "list", "g1"], { env: other });
    assert.match(snap.stderr, /VM 'g1' has no qcow2 drive/);
    const qmp = await env.run([...base, "qmp", "run", "g1", "query-status"], { env: other });
    assert.equal(qmp.code, 3);
    assert.match(qmp.stderr, /not running/);
  });
});

Deno.test("a VM whose stored config lacks keys works; a wrong key is named, and rm still works", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", "--empty", "--name", "old1", "--memory", "256M"])).trim();
    sql(env, "UPDATE vm_instances SET config_data = ? WHERE id = ?", '{"memory": "256M"}', id);
    assert.match(await env.ok(["info", "old1"]), /memory: 256M/);
    const dry = await env.run(["start", "old1", "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /-m 256M/);
    sql(env, "UPDATE vm_instances SET config_data = ? WHERE id = ?", '{"storage": "x"}', id);
    for (const args of [["info", "old1"], ["start", "old1"], ["storage", "ls", "old1"]]) {
      const res = await env.run(args);
      assert.equal(res.code, 1, args.join(" "));
      assert.match(res.stderr, /^qvm: VM 'old1' has an invalid stored config: 'storage' must be/);
      assert.doesNotMatch(res.stderr, /internal error/);
    }
    assert.match(await env.ok(["rm", "old1", "--yes"]), /removed old1/);
  });
});

Deno.test("a QMP quit from outside qvm is recorded as such, not as a guest shutdown", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "q1" })]);
    await env.ok(["start", "q1", "--wait-for", "qmp"]);
    const { pid } = await env.status("q1");
    await env.run(["qmp", "run", "q1", "quit"]);
    assert.ok(await eventually(() => !alive(pid)));
    const s = await env.status("q1");
    assert.equal(s.status, "stopped");
    assert.match(s.stop_reason, /QMP quit/);
  });
});

Deno.test("stop of a paused guest skips the ACPI wait and ends with QMP quit", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "pz" })]);
    await env.ok(["start", "pz", ...WAIT_READY]);
    await env.ok(["qmp", "pause", "pz"]);
    assert.equal((await env.status("pz")).status, "paused");
    const started = Date.now();
    const res = await env.run(["stop", "pz", "--timeout", "60", "--json"]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(JSON.parse(res.stdout).step, "quit");
    // ACPI's share would be 42 s: a paused guest cannot answer it, so qvm must not wait it out.
    assert.ok(Date.now() - started < 25_000, `took ${Date.now() - started} ms`);
  });
});

Deno.test("a guest that powered off under no-shutdown is quit at once, as a guest power-off", async () => {
  await withEnv(async (env) => {
    const config = await guestConfig(env, { name: "ns", extra: "  - no-shutdown" });
    await env.ok(["add", config]);
    await env.ok(["start", "ns", ...WAIT_READY]);
    const { pid } = await env.status("ns");
    await env.ok(["qmp", "run", "ns", "system_powerdown"]);
    assert.ok(
      await eventually(async () => (await env.status("ns")).status === "shutdown", {
        timeout: 20_000,
      }),
      "status must show QEMU's shutdown run state",
    );
    const started = Date.now();
    const res = await env.run(["stop", "ns", "--timeout", "60", "--json"]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(JSON.parse(res.stdout).step, "poweroff");
    assert.ok(Date.now() - started < 25_000, `took ${Date.now() - started} ms`);
    assert.ok(!alive(pid));
    assert.match((await env.status("ns")).stop_reason, /guest power-off/);
  });
});

Deno.test("a guest powering off during stop under no-shutdown ends as a guest power-off", async () => {
  await withEnv(async (env) => {
    const config = await guestConfig(env, { name: "ns2", extra: "  - no-shutdown" });
    await env.ok(["add", config]);
    await env.ok(["start", "ns2", ...WAIT_READY]);
    const started = Date.now();
    const res = await env.run(["stop", "ns2", "--timeout", "60", "--json"]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(JSON.parse(res.stdout).step, "poweroff");
    assert.ok(Date.now() - started < 25_000, `took ${Date.now() - started} ms`);
  });
});

Deno.test("stop with the command socket gone uses the status socket, still by ACPI", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", await guestConfig(env, { name: "gs" })])).trim();
    await env.ok(["start", "gs", ...WAIT_READY]);
    await Deno.remove(join(env.runtimeDir, `${id}.qmp`));
    const started = Date.now();
    const res = await env.run(["stop", "gs", "--timeout", "60", "--json"]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(JSON.parse(res.stdout).step, "acpi");
    assert.ok(Date.now() - started < 25_000, `took ${Date.now() - started} ms`);
    assert.deepEqual(await shutdownCauses(env, id), [GUEST_SHUTDOWN], "the guest powered off");
  });
});

Deno.test("a start waiting for the console fails fast when the guest powers off instead", async () => {
  await withEnv(async (env) => {
    const config = await guestConfig(env, { name: "po", extra: "  - no-shutdown" });
    await env.ok(["add", config]);
    const started = Date.now();
    const start = env.run(["start", "po", "--wait-for", "serial:NEVER-PRINTED", "--timeout", "90"]);
    // Once QEMU answers, power the guest off: it stays in run state `shutdown` (no-shutdown).
    assert.ok(
      await eventually(async () =>
        (await env.run(["qmp", "run", "po", "query-status"])).code === 0
      ),
    );
    await eventually(async () => {
      await env.run(["qmp", "run", "po", "system_powerdown"]);
      return Date.now() - started > 60_000 ||
        (await env.run(["status", "po", "--json"])).stdout.includes('"failed"');
    }, { timeout: 60_000 });
    const res = await start;
    assert.equal(res.code, 1, res.stderr);
    assert.match(res.stderr, /^qvm: the guest powered off \(QEMU run state shutdown\)/);
    assert.ok(Date.now() - started < 60_000, "the wait must not run out its 90 s");
    assert.equal((await env.status("po")).status, "failed");
  });
});

Deno.test("a start waiting for ssh or the agent fails fast when the guest powers off instead", async () => {
  await withEnv(async (env) => {
    // No sshd and no agent in this guest: only the run state can end the wait early.
    const extra = "  - no-shutdown\nnetwork:\n  ports: ['auto:22']\nguest_agent: true";
    for (const kind of ["ssh", "agent"]) {
      const name = `po-${kind}`;
      await env.ok(["add", await guestConfig(env, { name, extra })]);
      const started = Date.now();
      const start = env.run(["start", name, "--wait-for", kind, "--timeout", "90"]);
      assert.ok(
        await eventually(async () =>
          (await env.run(["qmp", "run", name, "query-status"])).code === 0
        ),
      );
      await eventually(async () => {
        await env.run(["qmp", "run", name, "system_powerdown"]);
        return Date.now() - started > 60_000 ||
          (await env.run(["status", name, "--json"])).stdout.includes('"failed"');
      }, { timeout: 60_000 });
      const res = await start;
      assert.equal(res.code, 1, `${kind}: ${res.stderr}`);
      assert.match(res.stderr, /^qvm: the guest powered off \(QEMU run state shutdown\)/);
      assert.ok(Date.now() - started < 60_000, `${kind}: the wait must not run out its 90 s`);
    }
  });
});

Deno.test("stop --timeout covers the whole command, the wait for another command's lock included", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", await guestConfig(env, { name: "dl", acpi: false })])).trim();
    await env.ok(["start", "dl", "--wait-for", "qmp"]);
    const { pid } = await env.status("dl");
    // Another command holds the VM for 7 s; the guest ignores ACPI, so stop must escalate.
    const lock = await Deno.open(join(env.runtimeDir, `${id}.lock`), { read: true, write: true });
    await lock.lock(true);
    const release = setTimeout(() => {
      lock.unlockSync();
      lock.close();
    }, 7000);
    const started = Date.now();
    const res = await env.run(["stop", "dl", "--timeout", "10"]);
    const elapsed = Date.now() - started;
    clearTimeout(release);
    try {
      lock.close();
    } catch { /* released by the timer */ }
    assert.equal(res.code, 0, res.stderr);
    assert.ok(!alive(pid));
    // Lock wait plus a full sequence would be 17 s; one deadline keeps it near 10 s.
    assert.ok(elapsed < 14_000, `took ${elapsed} ms`);
  });
});

Deno.test("a VM whose binary is a QEMU under another name is tracked, stopped and never doubled", async () => {
  await withEnv(async (env) => {
    const qemu = new Deno.Command("sh", { args: ["-c", "command -v qemu-system-x86_64"] })
      .outputSync();
    const binary = join(env.root, "bin", "vmm");
    await Deno.mkdir(join(env.root, "bin"));
    await Deno.copyFile(new TextDecoder().decode(qemu.stdout).trim(), binary);
    await Deno.chmod(binary, 0o755);
    // A copied QEMU finds its firmware where the installed one keeps it.
    const config = await guestConfig(env, {
      name: "cb",
      extra: "  - L: /usr/share/seabios\n  - L: /usr/share/qemu\n  - net: none",
    });
    await Deno.writeTextFile(config, `\nbinary: ${binary}\n`, { append: true });
    const id = (await env.ok(["add", config])).trim();
    // A copied QEMU finds its accelerator modules where the installed one keeps them.
    const modules = { QEMU_MODULE_DIR: "/usr/lib/x86_64-linux-gnu/qemu" };
    const start = await env.run(["start", "cb", "--wait-for", "qmp"], { env: modules });
    assert.equal(start.code, 0, start.stderr);
    const s = await env.status("cb");
    assert.equal(s.status, "running");
    sql(env, "UPDATE vm_instances SET status = 'failed', pid = NULL WHERE id = ?", id);
    const again = await env.run(["start", "cb", "--wait-for", "process"], { env: modules });
    assert.equal(again.code, 1, "a second start must find the running QEMU");
    assert.match(await env.ok(["stop", "cb", "--force"]), /stopped cb/);
    assert.ok(!alive(s.pid));
  });
});

Deno.test("with a guest agent, stop plans guest-shutdown between ACPI and quit", () => {
  assert.deepEqual(planStop(30, { agent: true }).map((s) => s.step), [
    "acpi",
    "agent",
    "quit",
    "sigterm",
    "sigkill",
  ]);
  const total = planStop(30, { agent: true }).reduce((sum, s) => sum + s.waitMs, 0);
  assert.ok(total <= 30_000 + 1000, `the plan spends ${total} ms of a 30 s timeout`);
  assert.deepEqual(planStop(30).map((s) => s.step), ["acpi", "quit", "sigterm", "sigkill"]);
});

Deno.test("a guest that ignores ACPI and has no agent answering still stops, by QMP quit", async () => {
  await withEnv(async (env) => {
    const config = await guestConfig(env, { name: "ga", acpi: false });
    await Deno.writeTextFile(config, "\nguest_agent: true\n", { append: true });
    await env.ok(["add", config]);
    await env.ok(["start", "ga", "--wait-for", "qmp"]);
    const { pid } = await env.status("ga");
    const res = await env.run(["stop", "ga", "--timeout", "6", "--json"]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(JSON.parse(res.stdout).step, "quit");
    assert.ok(!alive(pid));
  });
});

Deno.test("exec runs as a cloud_init VM's user unless --root or --user say otherwise", () => {
  const vm = { cloudInit: { user: "dev" }, fallback: "qvm" };
  assert.equal(execUser({}, vm), "dev");
  assert.equal(execUser({}, { cloudInit: {}, fallback: "alice" }), "alice");
  assert.equal(execUser({ root: true }, vm), undefined);
  assert.equal(execUser({ user: "bob" }, vm), "bob");
  assert.equal(execUser({ user: "root" }, vm), undefined);
  assert.equal(execUser({}, { fallback: "alice" }), undefined, "no cloud_init: the agent's user");
  assert.throws(() => execUser({ user: "x y" }, vm), /invalid --user/);
  assert.throws(() => execUser({ user: "bob", root: true }, vm), /not both/);
});

Deno.test("rm --delete-storage never opens a fifo another VM names (it would block)", async () => {
  await withEnv(async (env) => {
    const fifo = join(env.root, "console.fifo");
    const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.equal(mk.code, 0);
    const disk = join(env.root, "a.qcow2");
    await env.ok([
      "add",
      await env.file(
        "a.yaml",
        `storage:\n  - name: d\n    file: ${disk}\n    size: 16M\n    type: qcow2\n`,
      ),
      "--name",
      "a",
    ]);
    await env.run(["start", "a", "--wait-for", "process"]);
    await env.run(["stop", "a", "--force"]);
    assert.ok(exists(disk), "the start must have created the disk");
    await env.ok([
      "add",
      await env.file("b.yaml", `arguments:\n  - serial: pipe:${fifo}\n  - hdb: ${fifo}\n`),
      "--name",
      "b",
    ]);
    // Should rm open the fifo, it blocks until a writer comes: after a generous wait, a writer
    // comes and goes every half second (a read-write open of a fifo never blocks).
    const started = Date.now();
    let writers: ReturnType<typeof setInterval> | undefined;
    const unblock = setTimeout(() => {
      writers = setInterval(() => Deno.openSync(fifo, { read: true, write: true }).close(), 500);
    }, 30_000);
    const rm = await env.run(["rm", "a", "--delete-storage", "--yes"]);
    clearTimeout(unblock);
    clearInterval(writers);
    assert.ok(Date.now() - started < 30_000, "rm blocked opening the fifo");
    assert.equal(rm.code, 0, rm.stderr);
    assert.ok(!exists(disk), "a disk no other VM uses was kept");
  });
});
