/**
 * A pid is a VM's QEMU only when it runs as us, its executable (the /proc exe link, which a
 * process cannot fake) is a QEMU binary owned by root or us, it is not a zombie, and its argv
 * carries qvm's runtime markers for the VM: `-uuid` exactly the VM's id, and the pid file and QMP
 * socket qvm gives it in this runtime dir. Real processes throughout: a fake that copies QEMU's
 * argv, another user's copy of a program under QEMU's name, a bare QEMU, a zombie QEMU, a real
 * QEMU another user runs with a VM's -uuid.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import {
  cmdlineHasMarkers,
  cmdlineHasUuid,
  cmdlineUuid,
  findQemuWithUuid,
  isLive,
  isOurQemu,
  isQemuExe,
  markersIn,
  type QemuMarkers,
  readCmdline,
} from "../../src/qemu/process.ts";
import { launchArgv } from "../../src/qemu/launch.ts";
import { vmPaths } from "../../src/vm_files.ts";
import { type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { alive, MACHINE_NONE, pidsMentioning } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";
import { needsRoot } from "../helpers/needs.ts";

const ID = "0d3c8f9e-5a41-4c1b-9f4e-2b7d6a1e8c55";

/** What marks VM `id`'s QEMU as this env's (see `isOurQemu`). */
function markers(env: QvmEnv, id: string, binary?: string): QemuMarkers {
  return markersIn(env.runtimeDir, { id, config: { binary } });
}

/** The argv options by which qvm marks VM `id`'s QEMU as its own in `env`. */
function markerArgs(env: QvmEnv, id: string): string[] {
  const { pidFile, qmpSocket } = markers(env, id);
  return ["-uuid", id, "-pidfile", pidFile, "-qmp", `unix:${qmpSocket},server=on,wait=off`];
}

/** Records `pid` as VM `name`'s running QEMU, in the database and in its pid file. */
function claim(env: QvmEnv, name: string, pid: number): void {
  const db = new DatabaseSync(join(env.dataDir, "qvm.db"));
  try {
    db.prepare("UPDATE vm_instances SET status = 'running', pid = ? WHERE name = ?").run(pid, name);
    const { id } = db.prepare("SELECT id FROM vm_instances WHERE name = ?").get(name) as {
      id: string;
    };
    Deno.mkdirSync(env.runtimeDir, { recursive: true, mode: 0o700 });
    Deno.writeTextFileSync(join(env.runtimeDir, `${id}.pid`), `${pid}\n`);
  } finally {
    db.close();
  }
}

/**
 * A process that is not QEMU but whose argv is QEMU's: `argv0` and then `args` (it waits on its
 * stdin, so closing or killing it leaves nothing behind). `exe` is the program it really runs.
 */
async function impostor(
  options: { argv0: string; args: string[]; exe?: string },
): Promise<{ pid: number; stop(): Promise<void> }> {
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      'exec -a "$0" "$QVM_TEST_EXE" -c "read line; :" "$@"',
      options.argv0,
      ...options.args,
    ],
    env: { QVM_TEST_EXE: options.exe ?? "/bin/sh" },
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const pid = child.pid;
  const ready = await eventually(() => readCmdline(pid)?.[0] === options.argv0, { timeout: 5000 });
  assert.ok(ready, "the impostor started");
  return {
    pid,
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

Deno.test("the -uuid of an argv is the value after the last -uuid, matched exactly", () => {
  const qemu = "qemu-system-x86_64";
  assert.equal(cmdlineUuid([qemu, "-m", "1G", "-uuid", ID, "-daemonize"]), ID);
  assert.equal(cmdlineUuid([qemu, "--uuid", ID]), ID);
  assert.equal(cmdlineUuid([qemu, "-uuid", "a", "-uuid", ID]), ID, "QEMU takes the last");
  assert.equal(cmdlineUuid([qemu, "-uuid"]), undefined);
  assert.equal(cmdlineUuid(["-uuid", ID]), undefined, "argv[0] is the program, not an option");
  assert.ok(cmdlineHasUuid([qemu, "-uuid", ID], ID));
  for (
    const argv of [
      [qemu, "-uuid", `${ID}0`],
      [qemu, "-uuid", ID.slice(0, -1)],
      [qemu, "-uuid", ID.toUpperCase()],
      [qemu, `-uuid ${ID}`],
      [qemu, "-append", `-uuid ${ID}`],
      [qemu, "-name", `x-uuid ${ID}`],
      [qemu, "-uuid", ID, "-uuid", crypto.randomUUID()],
      [qemu, "-uuid=" + ID],
    ]
  ) {
    assert.ok(!cmdlineHasUuid(argv, ID), argv.join(" "));
  }
});

Deno.test("a QEMU binary is the configured one, or named like QEMU where programs are installed", () => {
  assert.ok(isQemuExe(Deno.realPathSync("/usr/bin/qemu-system-x86_64")));
  assert.ok(isQemuExe("/usr/libexec/qemu-kvm"));
  assert.ok(!isQemuExe("/usr/bin/sleep"));
  assert.ok(!isQemuExe("/usr/bin/qemu-img"));
  assert.ok(!isQemuExe("/tmp/qemu-system-x86_64/sh"));
  assert.ok(!isQemuExe("/usr/bin/my-qemu-system-x86_64"));
  const sh = Deno.realPathSync("/bin/sh");
  assert.ok(isQemuExe(sh, "/bin/sh"), "the configured binary, by its real path");
  assert.ok(isQemuExe(sh, "sh"), "the configured binary, by name on PATH");
  assert.ok(!isQemuExe(sh, "/bin/true"));
  const dir = Deno.makeTempDirSync({ prefix: "qvm-exe-" });
  try {
    // A program renamed like QEMU in a folder of its own is not a QEMU...
    const renamed = `${dir}/qemu-system-aarch64`;
    Deno.copyFileSync("/bin/true", renamed);
    assert.ok(!isQemuExe(renamed));
    // ...unless it is the VM's configured binary, or sits beside it (a wrapper's real QEMU).
    assert.ok(isQemuExe(renamed, renamed));
    const wrapped = `${dir}/.qemu-system-aarch64-wrapped`;
    Deno.copyFileSync("/bin/true", wrapped);
    assert.ok(isQemuExe(wrapped, renamed));
    assert.ok(!isQemuExe(wrapped));
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a renamed copy of another program carrying the VM's -uuid is never its QEMU", async () => {
  await withEnv(async (env) => {
    const id = JSON.parse(await env.ok(["add", "--empty", "--name", "v2", "--json"])).id;
    const exe = join(env.root, "qemu-system-x86_64");
    await Deno.copyFile("/bin/sh", exe);
    await Deno.chmod(exe, 0o755);
    const fake = await impostor({ argv0: exe, exe, args: ["-name", "v2", ...markerArgs(env, id)] });
    try {
      assert.ok(!isOurQemu(fake.pid, markers(env, id)), "a renamed sh is not a QEMU");
      claim(env, "v2", fake.pid);
      assert.notEqual((await env.status("v2")).status, "running");
      claim(env, "v2", fake.pid);
      const stop = await env.run(["stop", "v2", "--force"]);
      assert.equal(stop.code, 0, stop.stderr);
      assert.ok(alive(fake.pid), "stop --force left the renamed program alone");
      claim(env, "v2", fake.pid);
      const rm = await env.run(["rm", "v2", "--force", "--yes"]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.equal((await env.run(["status", "v2"])).code, 3, "rm removed the VM");
      assert.ok(alive(fake.pid), "rm --force left the renamed program alone");
    } finally {
      await fake.stop();
    }
  });
});

Deno.test("a process faking QEMU's argv at a VM's recorded pid is never signalled and is not running", async () => {
  await withEnv(async (env) => {
    const id = JSON.parse(await env.ok(["add", "--empty", "--name", "v1", "--json"])).id;
    const fake = await impostor({
      argv0: "qemu-system-x86_64",
      args: [
        ...["-name", "v1", "-uuid", id, "-daemonize"],
        ...["-pidfile", join(env.runtimeDir, `${id}.pid`)],
        ...["-qmp", `unix:${join(env.runtimeDir, `${id}.qmp`)},server=on,wait=off`],
      ],
    });
    try {
      assert.ok(!isOurQemu(fake.pid, markers(env, id)), "argv[0] is not the executable");
      assert.ok(!findQemuWithUuid().some((q) => q.pid === fake.pid));

      claim(env, "v1", fake.pid);
      const status = await env.status("v1");
      assert.notEqual(status.status, "running");
      claim(env, "v1", fake.pid);
      const ls = JSON.parse(await env.ok(["ls", "--json"]));
      assert.notEqual(ls[0].status, "running");

      claim(env, "v1", fake.pid);
      await env.run(["stop", "v1", "--force"]);
      assert.ok(alive(fake.pid), "stop --force left the impostor alone");
      claim(env, "v1", fake.pid);
      await env.run(["stop", "v1", "--timeout", "2"]);
      assert.ok(alive(fake.pid), "stop left the impostor alone");

      claim(env, "v1", fake.pid);
      const start = await env.run(["start", "v1", "--dry-run"]);
      assert.equal(start.code, 0, start.stderr);

      claim(env, "v1", fake.pid);
      const rm = await env.run(["rm", "v1", "--force", "--yes"]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.ok(alive(fake.pid), "rm --force left the impostor alone");

      // With the VM gone, it is not a QEMU of an unknown VM either.
      const doctor = await env.run(["doctor"]);
      assert.ok(!doctor.stdout.includes(`process ${fake.pid} `), doctor.stdout);
      await env.run(["cleanup"]);
      assert.ok(alive(fake.pid), "cleanup left the impostor alone");
    } finally {
      await fake.stop();
    }
  });
});

Deno.test({
  name: "another user's copy of a program named qemu-system-x86_64 is not a QEMU of ours",
  ignore: needsRoot("another user's qemu-system-x86_64 copy (chown)"),
  async fn() {
    await withEnv(async (env) => {
      const id = JSON.parse(await env.ok(["add", "--empty", "--name", "v2", "--json"])).id;
      const copy = join(env.root, "bin", "qemu-system-x86_64");
      Deno.mkdirSync(join(env.root, "bin"));
      Deno.copyFileSync(Deno.realPathSync("/bin/sh"), copy);
      Deno.chmodSync(copy, 0o755);
      Deno.chownSync(copy, 65534, 65534);
      const fake = await impostor({ argv0: copy, exe: copy, args: markerArgs(env, id) });
      try {
        assert.equal(Deno.readLinkSync(`/proc/${fake.pid}/exe`), copy);
        assert.ok(!isOurQemu(fake.pid, markers(env, id)));
        claim(env, "v2", fake.pid);
        await env.run(["stop", "v2", "--force"]);
        assert.ok(alive(fake.pid), "stop --force left it alone");
        assert.notEqual((await env.status("v2")).status, "running");
        // Owned by us, it still counts only as the VM's configured binary (the owner rule comes
        // on top of the binary rule): then it is ours.
        Deno.chownSync(copy, 0, 0);
        assert.ok(!isOurQemu(fake.pid, markers(env, id)));
        assert.ok(isOurQemu(fake.pid, markers(env, id, copy)));
        Deno.chownSync(copy, 65534, 65534);
        assert.ok(
          !isOurQemu(fake.pid, markers(env, id, copy)),
          "another user's configured binary is not ours",
        );
      } finally {
        await fake.stop();
      }
    });
  },
});

/**
 * Starts a bare, paused QEMU with qvm's markers for VM `id` in `env` and returns its pid. Without
 * `reaper` it daemonizes; with one it runs in the background of a shell that then becomes
 * `sleep`, which never reaps it.
 */
async function bareQemu(
  env: QvmEnv,
  id: string,
  reaper?: { child?: Deno.ChildProcess },
): Promise<number> {
  Deno.mkdirSync(env.runtimeDir, { recursive: true, mode: 0o700 });
  const { pidFile } = markers(env, id);
  const argv = [
    "qemu-system-x86_64",
    ...["-accel", "tcg", "-display", "none", "-S", "-m", "32", "-nodefaults"],
    ...markerArgs(env, id),
  ];
  if (reaper === undefined) {
    const out = await new Deno.Command(argv[0], {
      args: [...argv.slice(1), "-daemonize"],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
  } else {
    reaper.child = new Deno.Command("sh", {
      args: ["-c", '"$@" & exec sleep 60', "sh", ...argv],
      stdout: "null",
      stderr: "null",
    }).spawn();
  }
  assert.ok(
    await eventually(() => {
      try {
        return Number(Deno.readTextFileSync(pidFile).trim()) > 0;
      } catch {
        return false;
      }
    }),
  );
  return Number(Deno.readTextFileSync(pidFile).trim());
}

Deno.test("a real QEMU counts only for its exact -uuid and markers; a zombie QEMU does not count", async () => {
  await withEnv(async (env) => {
    const pid = await bareQemu(env, ID);
    try {
      assert.ok(isOurQemu(pid, markers(env, ID)));
      assert.equal(findQemuWithUuid().find((q) => q.pid === pid)?.uuid, ID);
      assert.ok(!isOurQemu(pid, { ...markers(env, ID), id: ID.slice(0, -1) }));
      assert.ok(!isOurQemu(pid, { ...markers(env, ID), id: crypto.randomUUID() }));
      // Another runtime dir's qvm does not take it for its own.
      assert.ok(!isOurQemu(pid, markersIn(join(env.root, "run2"), { id: ID })));
    } finally {
      Deno.kill(pid, "SIGKILL");
    }
    const other = crypto.randomUUID();
    const reaper: { child?: Deno.ChildProcess } = {};
    const zombie = await bareQemu(env, other, reaper);
    try {
      assert.ok(isOurQemu(zombie, markers(env, other)));
      Deno.kill(zombie, "SIGKILL");
      assert.ok(await eventually(() => !isLive(zombie)), "a killed, unreaped QEMU is not live");
      assert.ok(!isOurQemu(zombie, markers(env, other)));
      assert.ok(!findQemuWithUuid().some((q) => q.pid === zombie));
    } finally {
      try {
        Deno.kill(zombie, "SIGKILL");
      } catch { /* gone */ }
      try {
        reaper.child?.kill("SIGKILL");
      } catch { /* gone */ }
      await reaper.child?.status;
    }
  });
});

Deno.test("a live process is live; a reaped one is not", async () => {
  assert.ok(isLive(Deno.pid));
  const child = new Deno.Command("true").spawn();
  const pid = child.pid;
  await child.status;
  assert.ok(!isLive(pid));
});

Deno.test("qvm's runtime markers: the argv qvm launches carries them, a QEMU libvirt runs for the same -uuid does not", () => {
  const dirs = { dataDir: "/var/lib/qvm", runtimeDir: "/run/user/0/qvm,odd" };
  const vm = { id: ID, name: "web", config: { arguments: [], args: [], storage: [] } };
  const ours = markersIn(dirs.runtimeDir, { id: ID });
  const argv = launchArgv(vm as unknown as Parameters<typeof launchArgv>[0], vmPaths(dirs, ID));
  assert.ok(cmdlineHasMarkers(argv, ours), argv.join(" "));
  // What libvirt 9 gives QEMU for a domain exported with this VM's id: no pid file or QMP socket
  // of qvm's (its monitor is a chardev on a socket of libvirt's).
  const libvirt = [
    "/usr/bin/qemu-system-x86_64",
    ...["-name", "guest=web,debug-threads=on", "-S", "-machine", "pc-i440fx-7.2,usb=off"],
    ...["-accel", "tcg", "-m", "192", "-uuid", ID, "-no-user-config", "-nodefaults"],
    ...["-chardev", "socket,id=charmonitor,fd=30,server=on,wait=off"],
    ...["-mon", "chardev=charmonitor,id=monitor,mode=control", "-no-shutdown"],
  ];
  assert.ok(!cmdlineHasMarkers(libvirt, ours));
  const { pidFile, qmpSocket } = ours;
  const qmp = (path: string) => `unix:${path.replaceAll(",", ",,")},server=on,wait=off`;
  const base = ["qemu-system-x86_64", "-uuid", ID, "-pidfile", pidFile];
  for (
    const [why, cmdline] of [
      ["no QMP socket", base],
      ["no pid file", ["qemu-system-x86_64", "-uuid", ID, "-qmp", qmp(qmpSocket)]],
      ["another VM's id", [...base, "-qmp", qmp(qmpSocket)].map((a) => a === ID ? "x" : a)],
      ["another pid file", [...base, "-qmp", qmp(qmpSocket), "-pidfile", "/tmp/x.pid"]],
      ["a socket whose path only starts like ours", [...base, "-qmp", qmp(`${qmpSocket},x`)]],
      ["the path unescaped (a different socket to QEMU)", [...base, "-qmp", `unix:${qmpSocket}`]],
      ["the socket under another runtime dir", [...base, "-qmp", qmp(`/tmp/qvm-0/${ID}.qmp`)]],
    ] as const
  ) {
    assert.ok(!cmdlineHasMarkers(cmdline, ours), `${why}: ${cmdline.join(" ")}`);
  }
  assert.ok(cmdlineHasMarkers([...base, "--qmp", qmp(qmpSocket)], ours), "--qmp is -qmp");
});

/** Runs `argv` as user nobody (uid and gid 65534, no groups) in the background. */
function asNobody(argv: string[]): Deno.ChildProcess {
  return new Deno.Command("setpriv", {
    args: ["--reuid=65534", "--regid=65534", "--clear-groups", "--", ...argv],
    cwd: "/",
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

Deno.test({
  name:
    "a real QEMU another user runs with a VM's -uuid is not its QEMU: start works, stop, restart and rm never signal it, doctor names it",
  ignore: needsRoot("a QEMU run by another user (it runs QEMU as nobody)"),
  sanitizeResources: false,
  async fn() {
    await withEnv(async (env) => {
      const config = await env.file(
        "none.yaml",
        `name: v3\n${MACHINE_NONE}`,
      );
      const id = JSON.parse(await env.ok(["add", config, "--json"])).id;
      const foreign = asNobody([
        "/usr/bin/qemu-system-x86_64",
        ...["-machine", "none", "-accel", "tcg", "-display", "none", "-nodefaults"],
        ...["-name", "v3", "-uuid", id],
      ]);
      try {
        // setpriv execs QEMU in place: once it has, the pid is the QEMU, running as nobody.
        const asQemu = () => {
          try {
            return readCmdline(foreign.pid)?.[0] === "/usr/bin/qemu-system-x86_64" &&
              /\nUid:\s+65534\s/.test(Deno.readTextFileSync(`/proc/${foreign.pid}/status`));
          } catch {
            return false;
          }
        };
        assert.ok(await eventually(asQemu), "QEMU runs as nobody");
        assert.ok(!isOurQemu(foreign.pid, markers(env, id)));
        assert.equal((await env.status("v3")).status, "created");

        const forced = await env.run(["stop", "v3", "--force"]);
        assert.equal(forced.code, 0, forced.stderr);
        assert.ok(alive(foreign.pid), "stop --force of a VM that is not running left it alone");

        const start = await env.run(["start", "v3", "--wait-for", "qmp", "--json"]);
        assert.equal(start.code, 0, start.stderr);
        const ours = JSON.parse(start.stdout).pid;
        assert.notEqual(ours, foreign.pid);
        assert.ok(isOurQemu(ours, markers(env, id)));

        const doctor = await env.run(["doctor", "--json"]);
        const checks = JSON.parse(doctor.stdout).checks as { check: string; what: string }[];
        const named = checks.find((c) => c.check === "foreign_qemu");
        assert.ok(named, doctor.stdout);
        assert.match(named.what, new RegExp(`process ${foreign.pid}, running as user 65534`));
        assert.match(named.what, /VM 'v3''s -uuid but is not qvm's/);
        assert.ok(!checks.some((c) => c.what.includes(`process ${ours}`)), doctor.stdout);

        const restart = await env.run([
          "restart",
          "v3",
          "--wait-for",
          "qmp",
          "--stop-timeout",
          "1",
        ]);
        assert.equal(restart.code, 0, restart.stderr);
        assert.ok(alive(foreign.pid), "restart left it alone");
        assert.ok(!alive(ours), "restart replaced qvm's own QEMU");
        const stop = await env.run(["stop", "v3", "--timeout", "1"]);
        assert.equal(stop.code, 0, stop.stderr);
        assert.ok(alive(foreign.pid), "stop left it alone");
        await env.ok(["start", "v3", "--wait-for", "qmp"]);
        const rm = await env.run(["rm", "v3", "--force", "--yes"]);
        assert.equal(rm.code, 0, rm.stderr);
        assert.ok(alive(foreign.pid), "rm --force left it alone");
        assert.deepEqual(pidsMentioning(env.root), [], "rm --force ended qvm's own QEMU");
      } finally {
        try {
          foreign.kill("SIGKILL");
        } catch { /* gone */ }
        await foreign.output();
      }
    });
  },
});
