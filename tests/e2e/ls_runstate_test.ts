/**
 * `ls` at scale tells the truth without asking any QEMU over QMP: a running VM's liveness comes
 * from /proc, its run state from QEMU's `runstate_set` trace in its log, whoever changed it. 100
 * real QEMUs (`-machine none`), started through qvm's start path; some are then paused, resumed,
 * killed or stopped from outside qvm, and one has its status monitor held by another client.
 */
import assert from "node:assert/strict";
import { logRunState, qemuMessages } from "../../src/qemu/process.ts";
import { databasePath, StateStore } from "../../src/state/mod.ts";
import { Deadline } from "../../src/vm/env.ts";
import { vmPaths } from "../../src/vm_files.ts";
import { startVm } from "../../src/vm/start.ts";
import { withEnv } from "../helpers/qvm.ts";
import { alive, MACHINE_NONE } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";
import { rawQmp } from "../helpers/raw_qmp.ts";

const COUNT = 100;

Deno.test("the run state is the last complete runstate_set line in the last 4 KiB of QEMU's log", () => {
  const dir = Deno.makeTempDirSync({ prefix: "qvm-runstate-" });
  const log = `${dir}/q.log`;
  const line = (from: string, to: string) =>
    `runstate_set current_run_state 9 (${from}) new_state 4 (${to})\n`;
  const stateOf = (text: string) => {
    Deno.writeTextFileSync(log, text);
    return logRunState(log);
  };
  try {
    assert.equal(logRunState(`${dir}/missing.log`), undefined);
    assert.equal(stateOf(""), undefined, "no trace: a QEMU started without it");
    assert.equal(stateOf("qemu-system-x86_64: warning: something\n"), undefined);
    assert.equal(stateOf(line("prelaunch", "running") + line("running", "paused")), "paused");
    assert.equal(
      stateOf(line("running", "paused") + "runstate_set current_run_state 4 (paused) new_st"),
      "paused",
      "a line QEMU is still writing does not count",
    );
    assert.equal(
      stateOf(`4242@1700000000.123456:${line("running", "internal-error")}`),
      "internal-error",
    );
    const noise = "qemu-system-x86_64: warning: a long message\n".repeat(200);
    assert.equal(
      stateOf(line("prelaunch", "running") + noise + line("running", "guest-panicked")),
      "guest-panicked",
    );
    assert.equal(stateOf(line("prelaunch", "running") + noise), undefined, "only the tail is read");
    assert.equal(
      qemuMessages(
        `${line("prelaunch", "running")}qemu: an error\nqemu_system_shutdown_request reason=2\n`,
      ),
      "qemu: an error\n",
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** Runs `fn` over `items`, at most `limit` at a time. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

interface Listed {
  id: string;
  name: string;
  status: string;
  pid: number | null;
  stop_reason: string | null;
}

Deno.test({
  name:
    "ls with 100 running VMs: paused, resumed, killed and stopped from outside qvm, each shown as it is, without QMP",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withEnv(async (env) => {
      const config = await env.file(
        "none.yaml",
        MACHINE_NONE,
      );
      await env.ok(["add", config, "--name", "vm000"]);
      const dirs = { dataDir: env.dataDir, runtimeDir: env.runtimeDir };
      const store = StateStore.open(databasePath(env.dataDir));
      const names = Array.from({ length: COUNT }, (_, i) => `vm${String(i).padStart(3, "0")}`);
      try {
        const template = store.require("vm000").config;
        for (const name of names.slice(1)) store.insert({ name, config: { ...template, name } });
        await pool(names, 6, async (name) => {
          await startVm({ dirs, store }, store.require(name), {
            waitFor: { kind: "process" },
            deadline: Deadline.in(60_000),
          });
        });
      } finally {
        store.close();
      }
      const list = async (args: string[] = []) =>
        JSON.parse(await env.ok(["ls", "--json", ...args])) as Listed[];
      const before = await list();
      assert.equal(before.filter((vm) => vm.status === "running").length, COUNT);
      const vm = (name: string) => {
        const found = before.find((v) => v.name === name)!;
        return { ...found, paths: vmPaths(dirs, found.id) };
      };
      const paused = vm("vm010");
      const resumed = vm("vm020");
      const killed = vm("vm030");
      const held = vm("vm040");
      const untraced = vm("vm050");
      const sigstopped = vm("vm060");
      const killedLater = vm("vm070");

      // Run-state changes made through the VMs' own QMP sockets, by a client that is not qvm.
      await rawQmp(paused.paths.qmpSocket, ["stop"]);
      await rawQmp(resumed.paths.qmpSocket, ["stop", "cont"]);
      // A QEMU started before qvm traced run states: its log holds no trace, so QMP is asked.
      Deno.truncateSync(untraced.paths.qemuLog);
      await rawQmp(untraced.paths.qmpSocket, ["stop"]);
      Deno.kill(killed.pid!, "SIGKILL");
      assert.ok(await eventually(() => !alive(killed.pid!)));
      // A client holding the status monitor: a QMP question there would go unanswered.
      const holder = await Deno.connect({ transport: "unix", path: held.paths.monitorSocket });
      Deno.kill(sigstopped.pid!, "SIGSTOP");
      try {
        const after = await list();
        assert.equal(after.length, COUNT);
        const byName = Object.fromEntries(after.map((v) => [v.name, v]));
        assert.equal(byName.vm010.status, "paused");
        assert.equal(byName.vm020.status, "running");
        assert.equal(byName.vm050.status, "paused");
        assert.equal(byName.vm040.status, "running", "ls asked no QMP of the held monitor");
        assert.equal(byName.vm060.status, "unresponsive");
        assert.deepEqual(byName.vm030, {
          ...byName.vm030,
          status: "stopped",
          pid: null,
          stop_reason: "crashed or killed (SIGKILL)",
        });
        const special = new Set(["vm010", "vm030", "vm050", "vm060"]);
        const others = after.filter((v) => !special.has(v.name));
        assert.deepEqual(
          others.filter((v) => v.status !== "running" || v.stop_reason !== null),
          [],
        );
        assert.equal(byName.vm010.stop_reason, null);

        // The table (the general path) settles and shows the same, reason included.
        Deno.kill(killedLater.pid!, "SIGKILL");
        assert.ok(await eventually(() => !alive(killedLater.pid!)));
        const table = await env.ok(["ls"]);
        const row = (name: string) => table.split("\n").find((l) => l.startsWith(`${name} `));
        assert.match(row("vm010")!, /^vm010\s+paused\s/);
        assert.match(row("vm020")!, /^vm020\s+running\s/);
        assert.match(row("vm040")!, /^vm040\s+running\s/);
        assert.match(row("vm060")!, /^vm060\s+unresponsive\s/);
        assert.match(
          row("vm030")!,
          /^vm030\s+stopped\s+-\s+-\s+\S+\s+crashed or killed \(SIGKILL\)$/,
        );
        assert.match(
          row("vm070")!,
          /^vm070\s+stopped\s+-\s+-\s+\S+\s+crashed or killed \(SIGKILL\)$/,
        );
        assert.match(table.split("\n")[0], /^NAME\s+STATUS\s+PID\s+UPTIME\s+ID\s+REASON$/);
        assert.deepEqual(
          (await list(["--status", "paused"])).map((v) => v.name).sort(),
          ["vm010", "vm050"],
        );
      } finally {
        holder.close();
        Deno.kill(sigstopped.pid!, "SIGCONT");
      }
      // What ls read: QEMU's own lines, e.g. "... 9 (running) new_state 4 (paused)".
      assert.match(Deno.readTextFileSync(paused.paths.qemuLog), /new_state \d+ \(paused\)\n$/);
      await rawQmp(paused.paths.qmpSocket, ["cont"]);
      const resumedAll = await list();
      assert.equal(resumedAll.find((v) => v.name === "vm010")!.status, "running");
    });
  },
});
