import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { QVM_MAIN, type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { GUEST_READY_MARKER, guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";

/** A qvm process left running: its output so far, and how it ended. */
class Background {
  #child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  #done: Promise<number>;
  stdin?: WritableStreamDefaultWriter<Uint8Array>;

  constructor(env: QvmEnv, args: string[], options: { stdin?: boolean } = {}) {
    this.#child = env.command(args, { stdin: options.stdin ? "piped" : "null" }).spawn();
    if (options.stdin) this.stdin = this.#child.stdin.getWriter();
    const collect = async (stream: ReadableStream<Uint8Array>, into: (text: string) => void) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) into(decoder.decode(chunk, { stream: true }));
    };
    const out = collect(this.#child.stdout, (t) => this.#stdout += t);
    const err = collect(this.#child.stderr, (t) => this.#stderr += t);
    this.#done = Promise.all([out, err, this.#child.status]).then(([, , s]) => s.code);
  }

  get pid(): number {
    return this.#child.pid;
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The exit code, once the process has ended. */
  exited(): Promise<number> {
    return this.#done;
  }

  /** Ends the process if it still runs (test cleanup). */
  async kill(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.#done.catch(() => {});
  }
}

/** The VM's stored status, read straight from the database. */
function storedStatus(env: QvmEnv, name: string): string | undefined {
  const db = new DatabaseSync(join(env.dataDir, "qvm.db"), { readOnly: true });
  try {
    const row = db.prepare("SELECT status FROM vm_instances WHERE name = ?").get(name);
    return row?.status as string | undefined;
  } finally {
    db.close();
  }
}

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

/** Adds the test guest as `name` and returns its id. */
async function addGuest(env: QvmEnv, name: string): Promise<string> {
  return (await env.ok(["add", await guestConfig(env, { name })])).trim();
}

/** Ends a `logs --follow` by stopping the VM; returns its exit code (it must end by itself). */
async function stopAndWait(env: QvmEnv, name: string, follower: Background): Promise<number> {
  await env.ok(["stop", name, "--force"]);
  const ended = await Promise.race([
    follower.exited(),
    new Promise<"still running">((r) => setTimeout(() => r("still running"), 30_000)),
  ]);
  assert.notEqual(ended, "still running", "logs --follow did not end after the VM stopped");
  return ended as number;
}

Deno.test("logs --follow waits for a VM that is starting and prints its boot", async () => {
  await withEnv(async (env) => {
    await addGuest(env, "w1");
    const start = new Background(env, ["start", "w1", ...WAIT_READY]);
    let follower: Background | undefined;
    try {
      // Attach while the start is under way: from `created` up to `starting`.
      await eventually(() => storedStatus(env, "w1") !== "created", { timeout: 30_000 });
      follower = new Background(env, ["logs", "w1", "--follow"]);
      assert.equal(await start.exited(), 0, start.stderr);
      assert.ok(
        await eventually(() => follower!.stdout.includes(GUEST_READY_MARKER), { timeout: 30_000 }),
        `logs --follow printed: ${JSON.stringify(follower.stdout)} ${follower.stderr}`,
      );
      assert.equal(await stopAndWait(env, "w1", follower), 0, follower.stderr);
    } finally {
      await start.kill();
      await follower?.kill();
    }
  });
});

Deno.test("logs --follow attached before start waits for the VM rather than ending", async () => {
  await withEnv(async (env) => {
    await addGuest(env, "w2");
    const follower = new Background(env, ["logs", "w2", "--follow"]);
    try {
      await env.ok(["start", "w2", ...WAIT_READY]);
      assert.ok(
        await eventually(() => follower.stdout.includes(GUEST_READY_MARKER), { timeout: 30_000 }),
        `logs --follow printed: ${JSON.stringify(follower.stdout)} ${follower.stderr}`,
      );
      assert.equal(await stopAndWait(env, "w2", follower), 0, follower.stderr);
    } finally {
      await follower.kill();
    }
  });
});

Deno.test("logs --follow reads a truncated log again from its new start", async () => {
  await withEnv(async (env) => {
    const id = await addGuest(env, "t1");
    await env.ok(["start", "t1", ...WAIT_READY]);
    const follower = new Background(env, ["logs", "t1", "--follow"]);
    const serial = await Deno.connect({
      transport: "unix",
      path: join(env.runtimeDir, `${id}.serial`),
    });
    try {
      assert.ok(
        await eventually(() => follower.stdout.includes(GUEST_READY_MARKER), { timeout: 30_000 }),
      );
      // As `logrotate copytruncate` does: the file is emptied in place, QEMU goes on appending.
      await Deno.truncate(join(env.dataDir, "logs", `${id}.serial.log`), 0);
      await serial.write(new TextEncoder().encode('echo "AFTER"-TRUNCATE\n'));
      assert.ok(
        await eventually(() => follower.stdout.includes("AFTER-TRUNCATE"), { timeout: 30_000 }),
        `logs --follow printed after the truncation: ${follower.stdout.slice(-300)}`,
      );
      serial.close();
      assert.equal(await stopAndWait(env, "t1", follower), 0, follower.stderr);
    } finally {
      try {
        serial.close();
      } catch { /* closed */ }
      await follower.kill();
    }
  });
});

Deno.test("logs --follow goes on through a stop and start, and ends once the VM stays stopped", async () => {
  await withEnv(async (env) => {
    await addGuest(env, "r1");
    await env.ok(["start", "r1", ...WAIT_READY]);
    const follower = new Background(env, ["logs", "r1", "--follow"]);
    try {
      assert.ok(
        await eventually(() => follower.stdout.includes(GUEST_READY_MARKER), { timeout: 30_000 }),
      );
      await env.ok(["stop", "r1", "--force"]);
      await env.ok(["start", "r1", ...WAIT_READY]);
      // The serial log spans both runs: the second boot is followed too.
      assert.ok(
        await eventually(() => count(follower.stdout, GUEST_READY_MARKER) >= 2, {
          timeout: 30_000,
        }),
        `logs --follow printed ${count(follower.stdout, GUEST_READY_MARKER)} boots`,
      );
      // And through a restart in one command.
      await env.ok(["restart", "r1", ...WAIT_READY]);
      assert.ok(
        await eventually(() => count(follower.stdout, GUEST_READY_MARKER) >= 3, {
          timeout: 30_000,
        }),
        `logs --follow printed ${count(follower.stdout, GUEST_READY_MARKER)} boots`,
      );
      assert.equal(await stopAndWait(env, "r1", follower), 0, follower.stderr);
    } finally {
      await follower.kill();
    }
  });
});

Deno.test("logs of a VM whose start failed before QEMU ran says so", async () => {
  await withEnv(async (env) => {
    const config = await env.file("nobin.yaml", "name: nb\nbinary: /nonexistent/qemu\n");
    await env.ok(["add", config]);
    const start = await env.run(["start", "nb"]);
    assert.notEqual(start.code, 0);
    for (const args of [["logs", "nb"], ["logs", "nb", "--qemu"], ["logs", "nb", "--follow"]]) {
      const result = await env.run(args);
      assert.equal(result.code, 3, result.stderr);
      assert.match(result.stderr, /VM 'nb' has no log: its start failed before QEMU ran/);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    }
  });
});

Deno.test("console sends all of its piped input before it closes, and shows the answer", async () => {
  await withEnv(async (env) => {
    await addGuest(env, "c1");
    await env.ok(["start", "c1", ...WAIT_READY]);
    // Many commands in one go: the guest's UART takes 16 bytes at a time, so most of this is
    // still waiting in the socket when stdin ends.
    const feed = (file: string, tag: string) =>
      [
        ...Array.from({ length: 40 }, (_, i) => `echo line-${i} >> ${file}`),
        `echo "${tag}"-FED $(wc -l < ${file})`,
        "",
      ].join("\n");
    const result = await env.run(["console", "c1"], { stdin: feed("/tmp/a", "ALL") });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /ALL-FED 40/);
    // Without the socket table (no `ss` on PATH) the input still arrives whole.
    const bare = await env.run(["console", "c1"], {
      stdin: feed("/tmp/b", "BARE"),
      env: { PATH: "/nonexistent" },
    });
    assert.equal(bare.code, 0, bare.stderr);
    assert.ok(
      await eventually(async () => (await env.ok(["logs", "c1"])).includes("BARE-FED 40"), {
        timeout: 30_000,
      }),
      `the last command never ran: ${(await env.ok(["logs", "c1"])).slice(-400)}`,
    );
  });
});

Deno.test("a second console is refused with one line while another client is attached", async () => {
  await withEnv(async (env) => {
    const id = await addGuest(env, "c2");
    await env.ok(["start", "c2", ...WAIT_READY]);
    const first = new Background(env, ["console", "c2"], { stdin: true });
    try {
      const attached = async () => {
        const chardevs = JSON.parse(await env.ok(["qmp", "run", "c2", "query-chardev"]));
        const serial = chardevs.find((c: { label: string }) => c.label === "qvm-serial");
        return !serial.filename.startsWith("disconnected:");
      };
      assert.ok(
        await eventually(attached, { timeout: 30_000 }),
        "the first console never attached",
      );
      const second = await env.run(["console", "c2"], { stdin: "echo second\n" });
      assert.equal(second.code, 1, second.stderr);
      assert.match(
        second.stderr,
        new RegExp(`VM 'c2' already has a console attached \\(qvm console, pid ${first.pid}\\)`),
      );
      assert.equal(second.stderr.trim().split("\n").length, 1, second.stderr);
      // The first one still works and ends normally; then a console attaches again.
      await first.stdin!.write(new TextEncoder().encode('echo "FIRST"-OK\n'));
      await first.stdin!.close();
      assert.equal(await first.exited(), 0, first.stderr);
      assert.ok(await eventually(async () => !(await attached()), { timeout: 30_000 }));
      // Any other program on the socket counts too.
      const other = await Deno.connect({
        transport: "unix",
        path: join(env.runtimeDir, `${id}.serial`),
      });
      try {
        assert.ok(await eventually(attached, { timeout: 30_000 }));
        const refused = await env.run(["console", "c2"], { stdin: "" });
        assert.equal(refused.code, 1, refused.stderr);
        assert.match(refused.stderr, new RegExp(`attached \\(deno, pid ${Deno.pid}\\)`));
      } finally {
        other.close();
      }
      assert.ok(await eventually(async () => !(await attached()), { timeout: 30_000 }));
      const third = await env.run(["console", "c2"], { stdin: 'echo "THIRD"-OK\n' });
      assert.equal(third.code, 0, third.stderr);
      assert.ok(
        await eventually(async () => (await env.ok(["logs", "c2"])).includes("THIRD-OK"), {
          timeout: 30_000,
        }),
      );
      assert.match(await env.ok(["logs", "c2"]), /FIRST-OK/);
    } finally {
      await first.kill();
    }
  });
});

Deno.test("logs into a reader that stops early (| head) exits 0 quietly", async () => {
  await withEnv(async (env) => {
    const id = await addGuest(env, "big");
    // A log far larger than a pipe's buffer, so qvm is still writing when head leaves.
    await Deno.mkdir(join(env.dataDir, "logs"), { recursive: true, mode: 0o700 });
    await Deno.writeTextFile(
      join(env.dataDir, "logs", `${id}.serial.log`),
      "guest output line\n".repeat(100_000),
    );
    for (const extra of [[], ["--follow"]]) {
      const out = await new Deno.Command("bash", {
        args: [
          "-c",
          '"$@" 2>"$QVM_ERR" | head -c 100 >/dev/null; echo "${PIPESTATUS[0]}"',
          "bash",
          Deno.execPath(),
          ...["run", "-A", "--quiet", QVM_MAIN, "logs", "big", ...extra],
        ],
        env: {
          QVM_DATA_DIR: env.dataDir,
          QVM_RUNTIME_DIR: env.runtimeDir,
          NO_COLOR: "1",
          QVM_ERR: join(env.root, "err"),
        },
        stdin: "null",
      }).output();
      assert.equal(await Deno.readTextFile(join(env.root, "err")), "", `logs ${extra}`);
      assert.equal(new TextDecoder().decode(out.stdout).trim(), "0", `logs ${extra}`);
    }
  });
});
