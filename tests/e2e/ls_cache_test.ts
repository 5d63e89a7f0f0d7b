/**
 * `ls --json` keeps its output for the next run (vm/list.ts) and must never print a stale one:
 * every change of a VM, by qvm or by anyone writing the database, and every change a check finds
 * (a QEMU paused, resumed, stopped by a signal or killed from outside qvm) shows in the next
 * `ls`. Real QEMUs (`-machine none`), real QMP sockets, the real CLI.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { listCachePath } from "../../src/state/mod.ts";
import { readProcStat } from "../../src/qemu/process.ts";
import { type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { alive, MACHINE_NONE } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";
import { rawQmp } from "../helpers/raw_qmp.ts";

interface Listed {
  id: string;
  name: string;
  status: string;
  pid: number | null;
  stop_reason: string | null;
}

async function list(env: QvmEnv): Promise<Record<string, Listed>> {
  const listed = JSON.parse(await env.ok(["ls", "--json"])) as Listed[];
  return Object.fromEntries(listed.map((vm) => [vm.name, vm]));
}

function statusOf(listed: Record<string, Listed>): Record<string, string> {
  return Object.fromEntries(Object.entries(listed).map(([name, vm]) => [name, vm.status]));
}

/** Runs `sql` on the env's database as another program would (not through qvm). */
function writeDirectly(env: QvmEnv, sql: string): void {
  const db = new DatabaseSync(join(env.dataDir, "qvm.db"));
  try {
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec(sql);
  } finally {
    db.close();
  }
}

Deno.test("a process's /proc stat is read past its name, whatever the name holds", async () => {
  // A process may name itself anything, ") R 1 2 3" included: fields count from the last ")".
  const script = 'printf ") R 1 2 3 4 5 6" > /proc/$$/comm; echo; sleep 30';
  const child = new Deno.Command("sh", { args: ["-c", script], stdout: "piped" }).spawn();
  try {
    const reader = child.stdout.getReader();
    await reader.read(); // the name is set
    reader.releaseLock();
    const text = Deno.readTextFileSync(`/proc/${child.pid}/stat`);
    assert.match(text, /^\d+ \(\) R 1 2 3 4 5 6\) [A-Za-z] /);
    const start = Number(text.slice(text.lastIndexOf(")") + 2).split(" ")[19]);
    const stat = readProcStat(child.pid)!;
    assert.equal(stat.start, start);
    assert.match(stat.state, /^[A-Za-z]$/, "a state letter, not a field of the name");
    assert.equal(readProcStat(0x3fffffff), undefined, "no such process");
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await child.stdout.cancel().catch(() => {});
  }
});

Deno.test({
  name:
    "ls --json never prints a kept output that is stale: VMs added, removed, renamed, started, paused, stopped by a signal and killed show in the next ls",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withEnv(async (env) => {
      const config = await env.file(
        "none.yaml",
        MACHINE_NONE,
      );
      const cache = listCachePath(env.dataDir);
      for (const name of ["a", "b", "c"]) await env.ok(["add", config, "--name", name]);
      assert.deepEqual(statusOf(await list(env)), { a: "created", b: "created", c: "created" });

      // Nothing changed: the kept bytes are what the next run prints. Proven by changing them
      // (the length line and key kept): the next ls prints the change, so it read them.
      const kept = Deno.readFileSync(cache);
      const text = new TextDecoder().decode(kept);
      const tampered = text.replace('"name":"a"', '"name":"A"');
      assert.notEqual(tampered, text);
      Deno.writeTextFileSync(cache, tampered);
      assert.ok((await env.ok(["ls", "--json"])).includes('"name":"A"'), "the kept output is used");
      Deno.writeFileSync(cache, kept);

      await env.ok(["add", config, "--name", "d"]);
      assert.deepEqual(Object.keys(await list(env)), ["a", "b", "c", "d"], "an added VM shows");
      await env.ok(["rm", "d"]);
      assert.deepEqual(Object.keys(await list(env)), ["a", "b", "c"], "a removed VM is gone");

      // Another program renaming a VM in the database (its trigger renews the token).
      writeDirectly(env, "UPDATE vm_instances SET name = 'b2' WHERE name = 'b'");
      assert.deepEqual(Object.keys(await list(env)), ["a", "b2", "c"], "a rename shows");

      await env.ok(["start", "a", "c", "--wait-for", "qmp"]);
      let listed = await list(env);
      assert.deepEqual(statusOf(listed), { a: "running", b2: "created", c: "running" });
      const a = listed.a, c = listed.c;
      assert.ok(a.pid && c.pid);
      const inspect = JSON.parse(await env.ok(["inspect", "a"]));
      const qmp = inspect.process.qmp_socket as string;
      assert.deepEqual(await list(env), listed, "a second ls prints the same");

      await rawQmp(qmp, ["stop"]);
      assert.equal((await list(env)).a.status, "paused", "paused from outside qvm");
      assert.equal((await list(env)).a.status, "paused", "and still paused the run after");
      await rawQmp(qmp, ["cont"]);
      assert.equal((await list(env)).a.status, "running", "resumed from outside qvm");

      Deno.kill(c.pid!, "SIGSTOP");
      try {
        assert.equal((await list(env)).c.status, "unresponsive", "stopped by a signal");
      } finally {
        Deno.kill(c.pid!, "SIGCONT");
      }
      assert.equal((await list(env)).c.status, "running", "continued");

      Deno.kill(a.pid!, "SIGKILL");
      assert.ok(await eventually(() => !alive(a.pid!)));
      listed = await list(env);
      assert.deepEqual(listed.a, {
        ...a,
        status: "stopped",
        pid: null,
        stop_reason: "crashed or killed (SIGKILL)",
      });

      // A status qvm recorded by another program's hand: ls shows what the row says and checks.
      writeDirectly(env, "UPDATE vm_instances SET stop_reason = 'by hand' WHERE name = 'b2'");
      assert.equal((await list(env)).b2.stop_reason, "by hand");

      // The database put back to an older copy (its token goes back with it).
      const db = join(env.dataDir, "qvm.db");
      writeDirectly(env, "PRAGMA wal_checkpoint(TRUNCATE)");
      const before = Deno.readFileSync(db);
      const older = await list(env);
      await env.ok(["add", config, "--name", "e"]);
      assert.ok("e" in await list(env));
      writeDirectly(env, "PRAGMA wal_checkpoint(TRUNCATE)");
      Deno.writeFileSync(db, before);
      assert.deepEqual(Object.keys(await list(env)), Object.keys(older), "the older copy shows");
      await env.ok(["stop", "c", "--force"]);
      assert.equal((await list(env)).c.status, "stopped");
    });
  },
});

Deno.test({
  name:
    "a guest an interrupted live snapshot left frozen shows frozen in the next ls --json, a listing kept or not",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withEnv(async (env) => {
      const config = await env.file(
        "none.yaml",
        MACHINE_NONE,
      );
      await env.ok(["add", config, "--name", "v"]);
      await env.ok(["start", "v", "--wait-for", "qmp"]);
      const { id, pid } = (await list(env)).v;
      // Long enough after the start for ls to keep its listing of the runtime dir too.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.equal((await list(env)).v.status, "running", "a listing is kept");
      assert.equal((await list(env)).v.status, "running");
      // The freezing command still runs (it holds the VM's lock): its marker names the QEMU.
      const lock = Deno.openSync(join(env.runtimeDir, `${id}.lock`), { read: true, write: true });
      lock.lockSync(true);
      const marker = join(env.runtimeDir, `${id}.frozen`);
      try {
        Deno.writeTextFileSync(marker, `${pid}\n`);
        assert.equal((await list(env)).v.status, "frozen");
        assert.equal((await list(env)).v.status, "frozen", "and the run after");
      } finally {
        lock.unlockSync();
        lock.close();
      }
      // Nobody holds it any more and the guest has no agent to thaw: the marker goes.
      assert.equal((await list(env)).v.status, "running");
      assert.throws(() => Deno.lstatSync(marker));
      await env.ok(["stop", "v", "--force"]);
    });
  },
});

Deno.test({
  name:
    "a running VM's pid is recorded with its start time; a recorded pid whose process started at another time is checked in full",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withEnv(async (env) => {
      const config = await env.file(
        "none.yaml",
        MACHINE_NONE,
      );
      await env.ok(["add", config, "--name", "v"]);
      await env.ok(["start", "v", "--wait-for", "qmp"]);
      const row = () => {
        const db = new DatabaseSync(join(env.dataDir, "qvm.db"), { readOnly: true });
        try {
          return db.prepare("SELECT pid, pid_start FROM vm_instances WHERE name = 'v'").get() as {
            pid: number;
            pid_start: number | null;
          };
        } finally {
          db.close();
        }
      };
      const { pid, pid_start } = row();
      assert.equal(pid_start, readProcStat(pid)!.start, "the start time /proc gives");

      // A recorded start time that is not the process's: ls checks the process in full, and
      // this one is the VM's QEMU, so it runs.
      writeDirectly(env, `UPDATE vm_instances SET pid_start = ${pid_start! + 1} WHERE name = 'v'`);
      assert.equal((await list(env)).v.status, "running");
      assert.equal((await env.status("v")).status, "running");

      // The row pointing at another process (as a reused pid would): never the VM's QEMU.
      const other = new Deno.Command("sleep", { args: ["30"] }).spawn();
      try {
        const start = readProcStat(other.pid)!.start;
        await env.ok(["stop", "v"]);
        writeDirectly(
          env,
          `UPDATE vm_instances SET status = 'running', pid = ${other.pid}, pid_start = ${
            start + 1
          } WHERE name = 'v'`,
        );
        const seen = (await list(env)).v;
        assert.equal(seen.status, "stopped");
        assert.ok(alive(other.pid), "and it was left alone");
      } finally {
        other.kill("SIGKILL");
        await other.status;
      }
    });
  },
});
