/**
 * The quick routes of `status VM` and `ls --json` (src/cli/quick.ts, run first by the built
 * forms) print what the full command prints, byte for byte, for what they answer, and leave all
 * else to it having written nothing: no database, no folder, no row. Real databases, real QEMUs
 * (`-machine none`), the real CLI beside the route.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { listCachePath } from "../../src/state/mod.ts";
import { type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { MACHINE_NONE } from "../helpers/guest.ts";
import { DECLINED } from "../helpers/quick_main.ts";
import { rawQmp } from "../helpers/raw_qmp.ts";

const QUICK_MAIN = new URL("../helpers/quick_main.ts", import.meta.url).pathname;

/** Runs `argv` by the quick route alone against `env`'s folders. */
async function quickRun(env: QvmEnv, argv: string[], extra: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", QUICK_MAIN, ...argv],
    env: { QVM_DATA_DIR: env.dataDir, QVM_RUNTIME_DIR: env.runtimeDir, NO_COLOR: "1", ...extra },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
}

/** Runs `argv` by the full command (qvm from source) against `env`'s folders. */
async function fullRun(env: QvmEnv, argv: string[]) {
  const out = await env.command(argv).output();
  return { code: out.code, stdout: out.stdout, stderr: new TextDecoder().decode(out.stderr) };
}

/** The route answers `argv` as the full command does, byte for byte. */
async function sameAnswer(env: QvmEnv, argv: string[]): Promise<Uint8Array> {
  const quick = await quickRun(env, argv);
  assert.equal(quick.code, 0, `quick ${argv.join(" ")}: ${quick.stderr}`);
  const full = await fullRun(env, argv);
  assert.equal(full.code, 0, `full ${argv.join(" ")}: ${full.stderr}`);
  assert.deepEqual(quick.stdout, full.stdout, argv.join(" "));
  return quick.stdout;
}

/**
 * Every file under `dir` with its size and mtime: what a run that writes nothing leaves as it
 * was. SQLite's shared-memory index and empty log of the database (`-shm`, `-wal`), which any
 * reader of a WAL database may make, and the folders' times they change, are not counted.
 */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (at: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(at)];
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(at, entry.name);
      if (/\.db-(shm|wal)$/.test(entry.name)) continue;
      const info = Deno.lstatSync(path);
      out.push(entry.isDirectory ? path : `${path} ${info.size} ${info.mtime?.getTime()}`);
      if (entry.isDirectory) walk(path);
    }
  };
  walk(dir);
  return out.sort();
}

/** The route declines `argv` and leaves everything under the env as it found it. */
async function declines(env: QvmEnv, argv: string[], why: string): Promise<void> {
  const before = tree(env.root);
  const quick = await quickRun(env, argv);
  assert.equal(quick.code, DECLINED, `${why}: ${quick.stderr}`);
  assert.equal(quick.stdout.length, 0, `${why}: nothing printed`);
  assert.equal(quick.stderr, "", `${why}: nothing said`);
  assert.deepEqual(tree(env.root), before, `${why}: nothing written`);
}

Deno.test("status VM: the quick route answers a VM that claims no process, as status does", async () => {
  await withEnv(async (env) => {
    // Nothing there yet: no data dir, then no database. The full command makes them.
    await declines(env, ["status", "web1"], "no data dir");
    Deno.mkdirSync(env.dataDir, { mode: 0o700 });
    await declines(env, ["status", "web1"], "no database");
    assert.throws(() => Deno.lstatSync(join(env.dataDir, "qvm.db")), Deno.errors.NotFound);

    const config = await env.file("none.yaml", MACHINE_NONE);
    for (const name of ["web1", "web2"]) await env.ok(["add", config, "--name", name]);
    const id = JSON.parse(await env.ok(["status", "web1", "--json"])).id;
    assert.equal(
      new TextDecoder().decode(await sameAnswer(env, ["status", "web1"])),
      "web1: created\n",
    );
    await sameAnswer(env, ["status", id]); // by id
    await sameAnswer(env, ["--data-dir", env.dataDir, "status", "web1"]);

    // A VM that ran and ended shows how; one running is left to status, which looks.
    await env.ok(["start", "web2"]);
    await declines(env, ["status", "web2"], "a running VM");
    await env.ok(["stop", "web2"]);
    const ended = new TextDecoder().decode(await sameAnswer(env, ["status", "web2"]));
    assert.match(ended, /^web2: stopped \(last ended: .+\)\n$/);

    // A QEMU's file of a VM that claims no process: status must look.
    const pidFile = join(env.runtimeDir, `${id}.pid`);
    Deno.writeTextFileSync(pidFile, `${Deno.pid}\n`);
    await declines(env, ["status", "web1"], "a pid file of a stopped VM");
    Deno.removeSync(pidFile);
    await sameAnswer(env, ["status", "web1"]);

    // Forms and failures the full command reports.
    await declines(env, ["status", "nosuch"], "no such VM");
    assert.equal((await fullRun(env, ["status", "nosuch"])).code, 3);
    await declines(env, ["status", "web1", "--json"], "--json");
    Deno.chmodSync(env.dataDir, 0o777);
    await declines(env, ["status", "web1"], "a data dir others may write");
    assert.equal((await fullRun(env, ["status", "web1"])).code, 4);
    Deno.chmodSync(env.dataDir, 0o700);

    // A database of an older schema is migrated by the full command, never by the route.
    const db = new DatabaseSync(join(env.dataDir, "qvm.db"));
    db.exec("INSERT INTO schema_version (version) VALUES (9999)");
    db.close();
    await declines(env, ["status", "web1"], "a schema this qvm does not know");
    assert.equal((await fullRun(env, ["status", "web1"])).code, 1);
  });
});

Deno.test("ls --json: the quick route prints the kept or built output, a piece at a time", async () => {
  await withEnv(async (env) => {
    const config = await env.file("none.yaml", MACHINE_NONE);
    for (const name of ["a", "b", "c"]) await env.ok(["add", config, "--name", name]);
    await env.ok(["start", "a"]);
    const cache = listCachePath(env.dataDir);

    // Built by the route (no file yet), then kept: the same bytes as the full command's.
    assert.throws(() => Deno.lstatSync(cache), Deno.errors.NotFound);
    const first = await sameAnswer(env, ["ls", "--json"]);
    assert.match(new TextDecoder().decode(first), /"name":"a","status":"running","pid":\d+/);
    await sameAnswer(env, ["ls", "--format", "json"]);

    // Kept output longer than a piece (256 KiB), behind a head longer than one too: both read
    // in pieces, printed as kept (the marks of VMs that do not exist are dropped on the way).
    const text = Deno.readTextFileSync(cache);
    const lines = text.split("\n");
    const marks = JSON.parse(lines[3]);
    for (let i = 0; i < 6000; i++) marks[`ghost-${i}`] = { start: i, size: i, state: "running" };
    const output = `[\n${
      Array.from({ length: 100_000 }, (_, i) => `  {"n":${i}}`).join(",\n")
    }\n]\n`;
    const tampered = [...lines.slice(0, 3), JSON.stringify(marks), lines[4], output.length, output]
      .join("\n");
    assert.ok(lines[3].length < 256 * 1024 && JSON.stringify(marks).length > 256 * 1024);
    Deno.writeTextFileSync(cache, tampered);
    const quick = await quickRun(env, ["ls", "--json"]);
    assert.equal(quick.code, 0, quick.stderr);
    assert.equal(new TextDecoder().decode(quick.stdout), output);
    assert.ok(!Deno.readTextFileSync(cache).includes("ghost-"), "marks renewed, output kept");
    assert.equal(new TextDecoder().decode((await fullRun(env, ["ls", "--json"])).stdout), output);

    // A kept file cut short is not printed: the output is built again.
    Deno.writeTextFileSync(cache, tampered.slice(0, tampered.length - 10));
    const rebuilt = await sameAnswer(env, ["ls", "--json"]);
    assert.notEqual(new TextDecoder().decode(rebuilt), output);
    assert.deepEqual(
      JSON.parse(new TextDecoder().decode(rebuilt)).map((v: { name: string }) => v.name),
      [
        "a",
        "b",
        "c",
      ],
    );

    // Paused and resumed through QMP by someone else, stopped by a signal: the route answers
    // each from the VM's log and /proc, as the full command does.
    const qmp = JSON.parse(await env.ok(["inspect", "a"])).process.qmp_socket as string;
    const statusIn = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes))[0].status;
    await rawQmp(qmp, ["stop"]);
    assert.equal(statusIn(await sameAnswer(env, ["ls", "--json"])), "paused");
    await rawQmp(qmp, ["cont"]);
    assert.equal(statusIn(await sameAnswer(env, ["ls", "--json"])), "running");
    const qemu = JSON.parse(await env.ok(["status", "a", "--json"])).pid;
    Deno.kill(qemu, "SIGSTOP");
    try {
      assert.equal(statusIn(await sameAnswer(env, ["ls", "--json"])), "unresponsive");
    } finally {
      Deno.kill(qemu, "SIGCONT");
    }
    assert.equal(statusIn(await sameAnswer(env, ["ls", "--json"])), "running");

    // A VM killed from outside qvm: the route leaves it to ls, which looks and records it.
    const pid = JSON.parse(await env.ok(["status", "a", "--json"])).pid;
    Deno.kill(pid, "SIGKILL");
    for (
      let i = 0;
      i < 100 && Deno.readTextFileSync(`/proc/${pid}/stat`).split(" ")[2] !== "Z";
      i++
    ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await declines(env, ["ls", "--json"], "a VM whose QEMU is gone");
    const listed = JSON.parse(
      new TextDecoder().decode((await fullRun(env, ["ls", "--json"])).stdout),
    );
    assert.equal(listed[0].status, "stopped");
    await sameAnswer(env, ["ls", "--json"]);
  });
});
