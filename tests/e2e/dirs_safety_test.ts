/**
 * qvm's folders and files are its own: a data or runtime dir that is a symlink, another user's or
 * writable by others is refused (exit 4) and never touched; a link planted where qvm or QEMU
 * writes a file is removed, never followed; relative folders are made absolute before anything
 * is recorded. Real qvm subprocesses and a real QEMU guest throughout.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { resolveDirs } from "../../src/state/paths.ts";
import { UsageError } from "../../src/errors.ts";
import { exists, pidsMentioning, type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { GUEST_READY_MARKER, guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";
import { needsRoot } from "../helpers/needs.ts";

/** Every command, with arguments that would make it act if the folders were fine. */
const COMMANDS: string[][] = [
  ["ls"],
  ["ls", "--json"],
  ["status", "x1"],
  ["info", "x1"],
  ["inspect", "x1"],
  ["add", "--empty", "--name", "n1"],
  ["apply", "x1", "--memory", "256M"],
  ["start", "x1"],
  ["stop", "x1", "--force"],
  ["rm", "x1", "--yes"],
  ["logs", "x1"],
  ["qmp", "pause", "x1"],
  ["snapshot", "list", "x1"],
  ["storage", "ls"],
  ["cleanup"],
  ["doctor"],
  ["doctor", "--fix"],
  ["completions", "bash"],
];

function listing(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

function mode(path: string): number {
  return Deno.lstatSync(path).mode! & 0o7777;
}

interface BadDir {
  name: string;
  /** Makes the bad folder under `root`; returns the path qvm is given and the folder to watch. */
  make(root: string): { given: string; watched: string };
  rootOnly?: boolean;
}

const BAD_DIRS: BadDir[] = [
  {
    name: "a symlink to a folder",
    make(root) {
      const target = join(root, "target");
      Deno.mkdirSync(target, { mode: 0o755 });
      Deno.chmodSync(target, 0o755);
      Deno.symlinkSync(target, join(root, "link"));
      return { given: join(root, "link"), watched: target };
    },
  },
  {
    name: "a symlink named with a trailing slash",
    make(root) {
      const target = join(root, "target");
      Deno.mkdirSync(target, { mode: 0o700 });
      Deno.symlinkSync(target, join(root, "link"));
      return { given: `${join(root, "link")}/`, watched: target };
    },
  },
  {
    name: "a folder of another user",
    rootOnly: true,
    make(root) {
      const dir = join(root, "theirs");
      Deno.mkdirSync(dir, { mode: 0o700 });
      Deno.chownSync(dir, 65534, 65534);
      return { given: dir, watched: dir };
    },
  },
  {
    name: "a folder with mode 0777",
    make(root) {
      const dir = join(root, "open");
      Deno.mkdirSync(dir);
      Deno.chmodSync(dir, 0o777);
      return { given: dir, watched: dir };
    },
  },
  {
    name: "a folder with mode 0770",
    make(root) {
      const dir = join(root, "shared");
      Deno.mkdirSync(dir);
      Deno.chmodSync(dir, 0o770);
      return { given: dir, watched: dir };
    },
  },
];

for (const bad of BAD_DIRS) {
  for (const which of ["runtime", "data"] as const) {
    Deno.test({
      name: `every command exits 4 with one line when the ${which} dir is ${bad.name}`,
      ignore: bad.rootOnly === true && needsRoot("a folder of another user (chown)"),
      async fn() {
        await withEnv(async (env) => {
          const { given, watched } = bad.make(env.root);
          const before = { mode: mode(watched), files: listing(watched) };
          const variable = which === "runtime" ? "QVM_RUNTIME_DIR" : "QVM_DATA_DIR";
          const flag = which === "runtime" ? "--runtime-dir" : "--data-dir";
          const shown = given.replace(/\/$/, "");
          for (const [i, args] of COMMANDS.entries()) {
            // Alternately by environment and by flag.
            const res = i % 2 === 0
              ? await env.run(args, { env: { [variable]: given } })
              : await env.run([...args, flag, given]);
            const what = `qvm ${args.join(" ")}`;
            assert.equal(res.code, 4, `${what}: ${res.stderr}`);
            const lines = res.stderr.trimEnd().split("\n");
            assert.equal(lines.length, 1, `${what}: ${res.stderr}`);
            assert.match(lines[0], new RegExp(`^qvm: ${which} dir ${shown} .*refuses to use it`));
            if (args[0] === "doctor") {
              assert.match(res.stdout, new RegExp(`^problem: ${which} dir ${shown} `, "m"));
            }
          }
          assert.equal(mode(watched), before.mode, "its mode is unchanged");
          assert.deepEqual(listing(watched), before.files, "nothing was made in it");
        });
      },
    });
  }
}

Deno.test("doctor --fix sets a subfolder of ours to 0700 but refuses a symlinked one, touching nothing", async () => {
  await withEnv(async (env) => {
    Deno.mkdirSync(env.dataDir, { mode: 0o700 });
    Deno.mkdirSync(join(env.dataDir, "logs"), { mode: 0o755 });
    Deno.chmodSync(join(env.dataDir, "logs"), 0o755);
    const fixed = await env.run(["doctor", "--fix"]);
    assert.equal(fixed.code, 0, fixed.stdout);
    assert.match(fixed.stdout, /^fixed: logs folder .* -- done: chmod 700 /m);
    assert.equal(mode(join(env.dataDir, "logs")), 0o700);

    const target = join(env.root, "elsewhere");
    Deno.mkdirSync(target);
    Deno.chmodSync(target, 0o755);
    Deno.removeSync(join(env.dataDir, "logs"));
    Deno.symlinkSync(target, join(env.dataDir, "logs"));
    const refused = await env.run(["doctor", "--fix"]);
    assert.equal(refused.code, 4, refused.stdout);
    assert.match(refused.stdout, /^problem: logs folder .*\/logs is a symbolic link -- /m);
    assert.match(refused.stderr, /^qvm: logs folder .* is a symbolic link; qvm refuses to use it/);
    assert.equal(mode(target), 0o755);
    assert.deepEqual(listing(target), []);
  });
});

/** Plants a symlink at `path` to a file outside qvm's folders with known content. */
function plantLink(env: QvmEnv, path: string, content: string | null): string {
  const victim = join(env.root, "victims", path.slice(path.lastIndexOf("/") + 1));
  Deno.mkdirSync(join(env.root, "victims"), { recursive: true });
  if (content !== null) Deno.writeTextFileSync(victim, content);
  Deno.symlinkSync(victim, path);
  return victim;
}

function stopQuietly(env: QvmEnv, name: string): Promise<unknown> {
  return env.run(["stop", name, "--force"]);
}

Deno.test("links planted at a VM's log, serial log, pid file, sockets and lock are never written through", async () => {
  await withEnv(async (env) => {
    const id = JSON.parse(
      await env.ok(["add", await guestConfig(env, { name: "s1" }), "--json"]),
    ).id;
    const logs = join(env.dataDir, "logs");
    Deno.mkdirSync(logs, { mode: 0o700 });
    Deno.mkdirSync(env.runtimeDir, { mode: 0o700 });
    const planted = [
      join(logs, `${id}.qemu.log`),
      join(logs, `${id}.serial.log`),
      join(env.runtimeDir, `${id}.pid`),
      join(env.runtimeDir, `${id}.qmp`),
      join(env.runtimeDir, `${id}.mon`),
      join(env.runtimeDir, `${id}.serial`),
      join(env.runtimeDir, `${id}.lock`),
    ];
    const victims = planted.map((path) => ({
      path,
      victim: plantLink(env, path, `precious ${path}\n`),
    }));
    try {
      const res = await env.run(["start", "s1", ...WAIT_READY]);
      assert.equal(res.code, 0, res.stderr);
      for (const { path, victim } of victims) {
        assert.equal(Deno.readTextFileSync(victim), `precious ${path}\n`, `${path}'s target`);
        assert.ok(!Deno.lstatSync(path).isSymlink, `${path} is no longer a link`);
      }
      assert.match(await env.ok(["logs", "s1"]), new RegExp(GUEST_READY_MARKER));
    } finally {
      await stopQuietly(env, "s1");
    }
  });
});

Deno.test("dangling links and hard links at a VM's log files create and change nothing", async () => {
  await withEnv(async (env) => {
    const id = JSON.parse(
      await env.ok(["add", await guestConfig(env, { name: "s2" }), "--json"]),
    ).id;
    const logs = join(env.dataDir, "logs");
    Deno.mkdirSync(logs, { mode: 0o700 });
    Deno.mkdirSync(env.runtimeDir, { mode: 0o700 });
    const dangling = [
      join(logs, `${id}.qemu.log`),
      join(env.runtimeDir, `${id}.pid`),
    ].map((path) => plantLink(env, path, null));
    const shared = join(env.root, "victims", "shared.log");
    Deno.writeTextFileSync(shared, "precious\n");
    Deno.linkSync(shared, join(logs, `${id}.serial.log`));
    try {
      const res = await env.run(["start", "s2", ...WAIT_READY]);
      assert.equal(res.code, 0, res.stderr);
      for (const victim of dangling) assert.ok(!exists(victim), `${victim} was not created`);
      assert.equal(Deno.readTextFileSync(shared), "precious\n");
      assert.match(await env.ok(["logs", "s2"]), new RegExp(GUEST_READY_MARKER));
    } finally {
      await stopQuietly(env, "s2");
    }
  });
});

Deno.test("logs --follow of a VM never started does not create the target of a planted link", async () => {
  await withEnv(async (env) => {
    const id = JSON.parse(await env.ok(["add", "--empty", "--name", "s4", "--json"])).id;
    Deno.mkdirSync(join(env.dataDir, "logs"), { mode: 0o700 });
    const victim = plantLink(env, join(env.dataDir, "logs", `${id}.serial.log`), null);
    const res = await env.run(["logs", "s4", "--follow"]);
    assert.ok(res.code === 0 || res.code === 3, res.stderr);
    assert.ok(!exists(victim), "the link's target was not created");
  });
});

Deno.test("start refuses (exit 4) a symlinked logs or disks folder and writes nothing there", async () => {
  await withEnv(async (env) => {
    const storage = "storage:\n  - name: d0\n    size: 16M";
    await env.ok(["add", await guestConfig(env, { name: "s3", extra: storage })]);
    Deno.mkdirSync(env.dataDir, { recursive: true, mode: 0o700 });
    for (const sub of ["logs", "disks"]) {
      const target = join(env.root, `${sub}-target`);
      Deno.mkdirSync(target);
      Deno.symlinkSync(target, join(env.dataDir, sub));
      const res = await env.run(["start", "s3", "--wait-for", "process"]);
      assert.equal(res.code, 4, res.stderr);
      assert.match(res.stderr, new RegExp(`^qvm: .*/${sub} is a symbolic link; qvm refuses`));
      assert.deepEqual(listing(target), [], `nothing was made in ${sub}'s target`);
      assert.deepEqual(pidsMentioning(env.root), [], "no QEMU was started");
      Deno.removeSync(join(env.dataDir, sub));
      Deno.mkdirSync(join(env.dataDir, sub), { mode: 0o700 });
    }
  });
});

Deno.test("an offline snapshot refuses (exit 4) a symlinked disk-locks folder and changes nothing", async () => {
  await withEnv(async (env) => {
    const disk = join(env.root, "d0.qcow2");
    const made = await new Deno.Command("qemu-img", {
      args: ["create", "-q", "-f", "qcow2", disk, "16M"],
    }).output();
    assert.ok(made.success);
    const config = await env.file(
      "v.yaml",
      `name: s5\nstorage:\n  - name: d0\n    file: ${disk}\n`,
    );
    await env.ok(["add", config]);
    Deno.mkdirSync(env.runtimeDir, { mode: 0o700 });
    const target = join(env.root, "locks-target");
    Deno.mkdirSync(target);
    Deno.symlinkSync(target, join(env.runtimeDir, "disk-locks"));
    const res = await env.run(["snapshot", "create", "s5", "snap1"]);
    assert.equal(res.code, 4, res.stderr);
    assert.match(res.stderr, /^qvm: .*\/disk-locks is a symbolic link; qvm refuses/);
    assert.deepEqual(listing(target), []);
    const list = await new Deno.Command("qemu-img", {
      args: ["snapshot", "-l", disk],
      stdout: "piped",
    }).output();
    assert.ok(!new TextDecoder().decode(list.stdout).includes("snap1"), "no snapshot was taken");
  });
});

/** No QVM_* folders from the env: the VM's folders come from these variables or flags alone. */
const NO_DIRS = { QVM_DATA_DIR: "", QVM_RUNTIME_DIR: "" };

Deno.test("relative data and runtime dirs are made absolute: rm --delete-storage from elsewhere deletes the disk", async () => {
  await withEnv(async (env) => {
    const here = join(env.root, "here");
    const there = join(env.root, "there");
    Deno.mkdirSync(here);
    Deno.mkdirSync(there);
    const storage = "storage:\n  - name: d0\n    size: 16M";
    const config = await guestConfig(env, { name: "r1", extra: storage });
    const relative = { QVM_DATA_DIR: "data", QVM_RUNTIME_DIR: "./run/" };
    let id = "";
    try {
      const add = await env.run(["add", config, "--json"], {
        cwd: here,
        env: { ...NO_DIRS, ...relative },
      });
      assert.equal(add.code, 0, add.stderr);
      id = JSON.parse(add.stdout).id;
      const start = await env.run(["start", "r1", "--wait-for", "process"], {
        cwd: here,
        env: { ...NO_DIRS, ...relative },
      });
      assert.equal(start.code, 0, start.stderr);
      const disk = join(here, "data", "disks", id, "d0.qcow2");
      assert.ok(exists(disk));
      const db = new DatabaseSync(join(here, "data", "qvm.db"), { readOnly: true });
      try {
        const row = db.prepare("SELECT created_files, qmp_socket_path FROM vm_instances").get() as {
          created_files: string;
          qmp_socket_path: string;
        };
        assert.deepEqual(JSON.parse(row.created_files), [disk]);
        assert.equal(row.qmp_socket_path, join(here, "run", `${id}.qmp`));
      } finally {
        db.close();
      }
      const flags = ["--data-dir", "../here/data", "--runtime-dir", "../here/./run"];
      const status = await env.run([...flags, "status", "r1", "--json"], {
        cwd: there,
        env: NO_DIRS,
      });
      assert.equal(JSON.parse(status.stdout).status, "running", status.stderr);
      const rm = await env.run([...flags, "rm", "r1", "--force", "--delete-storage", "--yes"], {
        cwd: there,
        env: NO_DIRS,
      });
      assert.equal(rm.code, 0, rm.stderr);
      assert.ok(!exists(disk), "the disk was deleted");
      assert.ok(await eventually(() => pidsMentioning(id).length === 0), "its QEMU is gone");
    } finally {
      for (const pid of id ? pidsMentioning(id) : []) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }
  });
});

Deno.test("folders resolve to absolute, normalized paths; relative XDG values are ignored", () => {
  const saved = Object.fromEntries(
    ["QVM_DATA_DIR", "QVM_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "HOME"].map((
      k,
    ) => [k, Deno.env.get(k)]),
  );
  const cwd = Deno.cwd();
  try {
    for (const k of Object.keys(saved)) Deno.env.delete(k);
    Deno.env.set("HOME", "/home/u");
    assert.deepEqual(resolveDirs({ dataDir: "d", runtimeDir: "./r/../s/" }), {
      dataDir: `${cwd}/d`,
      runtimeDir: `${cwd}/s`,
    });
    Deno.env.set("QVM_DATA_DIR", "x//y/.");
    Deno.env.set("QVM_RUNTIME_DIR", "/run/user/7/../8/qvm/");
    assert.deepEqual(resolveDirs({}), { dataDir: `${cwd}/x/y`, runtimeDir: "/run/user/8/qvm" });
    Deno.env.delete("QVM_DATA_DIR");
    Deno.env.delete("QVM_RUNTIME_DIR");
    Deno.env.set("XDG_DATA_HOME", "relative/share");
    Deno.env.set("XDG_RUNTIME_DIR", "relative/run");
    assert.deepEqual(resolveDirs({}), {
      dataDir: "/home/u/.local/share/qvm",
      runtimeDir: `/tmp/qvm-${Deno.uid()}`,
    });
    Deno.env.set("XDG_DATA_HOME", "/xdg/share/");
    Deno.env.set("XDG_RUNTIME_DIR", "/xdg/run");
    assert.deepEqual(resolveDirs({}), { dataDir: "/xdg/share/qvm", runtimeDir: "/xdg/run/qvm" });
    assert.throws(() => resolveDirs({ dataDir: "" }), UsageError);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
});
