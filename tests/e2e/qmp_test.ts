import assert from "node:assert/strict";
import { measureJson, QmpClient, QmpError } from "../../src/qemu/qmp.ts";
import { QvmError, TimeoutError, UsageError } from "../../src/errors.ts";

interface Vm {
  dir: string;
  socket: string;
  /** Spawn QEMU (once); tests that must connect first call this themselves. */
  start(): Deno.ChildProcess;
  child(): Deno.ChildProcess | undefined;
}

/** Run `fn` with a temp dir for a paused TCG QEMU; QEMU is killed and the dir removed afterwards. */
async function withQemu(
  fn: (vm: Vm) => Promise<void>,
  options: { start?: boolean } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qvm-qmp-test-" });
  const socket = `${dir}/qmp.sock`;
  let child: Deno.ChildProcess | undefined;
  const vm: Vm = {
    dir,
    socket,
    start() {
      child ??= new Deno.Command("qemu-system-x86_64", {
        args: [
          ...["-accel", "tcg", "-machine", "q35", "-m", "64M", "-nodefaults"],
          ...["-display", "none", "-S", "-qmp", `unix:${socket},server=on,wait=off`],
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      return child;
    },
    child: () => child,
  };
  try {
    if (options.start ?? true) vm.start();
    await fn(vm);
  } finally {
    if (child !== undefined) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await child.output();
    }
    await Deno.remove(dir, { recursive: true });
  }
}

/** Run `fn` with a connected client that is closed afterwards. */
async function withClient(vm: Vm, fn: (qmp: QmpClient) => Promise<void>): Promise<void> {
  const qmp = await QmpClient.connect(vm.socket, { timeoutMs: 10_000 });
  try {
    await fn(qmp);
  } finally {
    qmp.close();
    await qmp.closed;
  }
}

Deno.test("connect reads the greeting of QEMU 7.x and negotiates capabilities", async () => {
  await withQemu((vm) =>
    withClient(vm, async (qmp) => {
      assert.equal(qmp.greeting.QMP.version.qemu.major, 7);
      assert.equal(typeof qmp.greeting.QMP.version.qemu.minor, "number");
      assert.ok(Array.isArray(qmp.greeting.QMP.capabilities));
      const status = await qmp.execute<{ status: string }>("query-status");
      assert.equal(status.status, "prelaunch");
    })
  );
});

Deno.test("query-status of a VM started with -S is prelaunch, and running after cont", async () => {
  await withQemu((vm) =>
    withClient(vm, async (qmp) => {
      const before = await qmp.execute<{ status: string; running: boolean }>("query-status");
      assert.equal(before.status, "prelaunch");
      assert.equal(before.running, false);
      assert.deepEqual(await qmp.execute("cont"), {});
      const after = await qmp.execute<{ status: string; running: boolean }>("query-status");
      assert.equal(after.status, "running");
      assert.equal(after.running, true);
    })
  );
});

Deno.test("stop emits a STOP event that waitForEvent observes", async () => {
  await withQemu((vm) =>
    withClient(vm, async (qmp) => {
      await qmp.execute("cont");
      await qmp.waitForEvent("RESUME", { timeoutMs: 5000 });
      const mark = qmp.events.length;
      await qmp.execute("stop");
      const stop = await qmp.waitForEvent("STOP", { timeoutMs: 5000, since: mark });
      assert.equal(stop.event, "STOP");
      assert.equal(typeof stop.timestamp?.seconds, "number");
      assert.ok(qmp.events.includes(stop));
      const status = await qmp.execute<{ status: string }>("query-status");
      assert.equal(status.status, "paused");
    })
  );
});

Deno.test("waitForEvent times out with TimeoutError when the event never comes", async () => {
  await withQemu((vm) =>
    withClient(vm, async (qmp) => {
      await assert.rejects(qmp.waitForEvent("SHUTDOWN", { timeoutMs: 100 }), TimeoutError);
    })
  );
});

Deno.test("an unknown command rejects with QmpError of class CommandNotFound", async () => {
  await withQemu((vm) =>
    withClient(vm, async (qmp) => {
      await assert.rejects(qmp.execute("no-such-command"), (error) => {
        assert.ok(error instanceof QmpError);
        assert.ok(error instanceof QvmError);
        assert.equal(error.qmpClass, "CommandNotFound");
        assert.match(error.message, /no-such-command/);
        assert.equal(error.exitCode, 1);
        return true;
      });
      // The session still works afterwards.
      assert.equal((await qmp.execute<{ status: string }>("query-status")).status, "prelaunch");
    })
  );
});

Deno.test("concurrent executes on one client are matched to their replies by id", async () => {
  await withQemu((vm) =>
    withClient(vm, async (qmp) => {
      const replies = await Promise.all([
        ...Array.from({ length: 5 }, () => qmp.execute<{ status: string }>("query-status")),
      ]);
      assert.equal(replies.length, 5);
      for (const reply of replies) assert.equal(reply.status, "prelaunch");
      const [name, kvm] = await Promise.all([
        qmp.execute<{ name?: string }>("query-name"),
        qmp.execute<{ enabled: boolean }>("query-kvm"),
      ]);
      assert.deepEqual(name, {});
      assert.equal(kvm.enabled, false);
    })
  );
});

Deno.test("connect retries until QEMU creates the socket", async () => {
  await withQemu(async (vm) => {
    const connecting = QmpClient.connect(vm.socket, { timeoutMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    vm.start();
    const qmp = await connecting;
    try {
      assert.equal(qmp.greeting.QMP.version.qemu.major, 7);
      assert.equal((await qmp.execute<{ status: string }>("query-status")).status, "prelaunch");
    } finally {
      qmp.close();
      await qmp.closed;
    }
  }, { start: false });
});

Deno.test("connect to a socket nobody listens on throws TimeoutError within the timeout", async () => {
  await withQemu(async (vm) => {
    const started = Date.now();
    await assert.rejects(QmpClient.connect(vm.socket, { timeoutMs: 300 }), TimeoutError);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 300 && elapsed < 1300, `took ${elapsed} ms`);
  }, { start: false });
});

Deno.test("connect without retry fails at once when the socket is missing", async () => {
  await withQemu(async (vm) => {
    await assert.rejects(
      QmpClient.connect(vm.socket, { retry: false }),
      (error) => error instanceof QvmError && !(error instanceof TimeoutError),
    );
  }, { start: false });
});

Deno.test("connect to a file that is not a socket retries ECONNREFUSED, then times out", async () => {
  await withQemu(async (vm) => {
    await Deno.writeTextFile(vm.socket, "");
    await assert.rejects(QmpClient.connect(vm.socket, { timeoutMs: 200 }), /refused/i);
  }, { start: false });
});

Deno.test("quit resolves, closed resolves and QEMU exits", async () => {
  await withQemu(async (vm) => {
    const qmp = await QmpClient.connect(vm.socket, { timeoutMs: 10_000 });
    try {
      await qmp.execute("quit");
      await qmp.closed;
      const status = await vm.child()!.status;
      assert.equal(status.success, true);
      await assert.rejects(qmp.execute("query-status"), /QMP connection closed/);
      await assert.rejects(qmp.waitForEvent("STOP", { timeoutMs: 100 }), /QMP connection closed/);
    } finally {
      qmp.close();
    }
  });
});

Deno.test("waitForEvent and later commands reject with a clear error when QEMU dies", async () => {
  await withQemu(async (vm) => {
    const qmp = await QmpClient.connect(vm.socket, { timeoutMs: 10_000 });
    try {
      const waiting = qmp.waitForEvent("NEVER", { timeoutMs: 10_000 });
      vm.child()!.kill("SIGKILL");
      await assert.rejects(waiting, /QMP connection closed/);
      await qmp.closed;
      await assert.rejects(qmp.execute("query-status"), /QMP connection closed/);
    } finally {
      qmp.close();
    }
  });
});

Deno.test("a second client gets no greeting until the first disconnects", async () => {
  await withQemu((vm) =>
    withClient(vm, async (first) => {
      // QEMU 7.2 serves one QMP client at a time: the second connection is accepted by the kernel
      // but gets no greeting, so connect times out while the first client stays connected...
      await assert.rejects(
        QmpClient.connect(vm.socket, { timeoutMs: 500 }),
        (error) => error instanceof TimeoutError && /no greeting/.test(error.message),
      );
      assert.equal((await first.execute<{ status: string }>("query-status")).status, "prelaunch");

      // ...and a connect with a longer timeout succeeds as soon as the first client leaves.
      const connecting = QmpClient.connect(vm.socket, { timeoutMs: 10_000 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await first.execute("cont");
      first.close();
      await first.closed;
      const second = await connecting;
      try {
        assert.equal((await second.execute<{ status: string }>("query-status")).status, "running");
      } finally {
        second.close();
        await second.closed;
      }
    })
  );
});

Deno.test("clients queued behind a busy monitor are served one after another", async () => {
  await withQemu((vm) =>
    withClient(vm, async (first) => {
      // Two connections fit in QEMU's listen backlog; the third gets EAGAIN and keeps retrying.
      const queued = new Map(
        [0, 1, 2].map((i) => [
          i,
          QmpClient.connect(vm.socket, { timeoutMs: 15_000 }).then((qmp) => ({ i, qmp })),
        ]),
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      first.close();
      await first.closed;
      const served: number[] = [];
      try {
        while (queued.size > 0) {
          const { i, qmp } = await Promise.race(queued.values());
          queued.delete(i);
          served.push(i);
          assert.equal(qmp.greeting.QMP.version.qemu.major, 7);
          await qmp.execute("query-status");
          qmp.close();
          await qmp.closed;
        }
      } finally {
        const rest = await Promise.allSettled(queued.values());
        for (const r of rest) if (r.status === "fulfilled") r.value.qmp.close();
      }
      assert.deepEqual(served.toSorted(), [0, 1, 2]);
    })
  );
});

Deno.test("close rejects pending commands and is idempotent", async () => {
  await withQemu(async (vm) => {
    const qmp = await QmpClient.connect(vm.socket, { timeoutMs: 10_000 });
    const waiting = qmp.waitForEvent("NEVER", { timeoutMs: 10_000 });
    qmp.close();
    qmp.close();
    await assert.rejects(waiting, /QMP connection closed/);
    await qmp.closed;
    await assert.rejects(qmp.execute("query-status"), /QMP connection closed/);
  });
});

Deno.test("connect without permission for the socket throws PermissionError", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qvm-qmp-perm-" });
  try {
    const script = `${dir}/connect.ts`;
    await Deno.writeTextFile(
      script,
      `import { QmpClient } from ${
        JSON.stringify(new URL("../../src/qemu/qmp.ts", import.meta.url).href)
      };
try { await QmpClient.connect(${JSON.stringify(`${dir}/qmp.sock`)}); }
catch (e) { console.log(e.name, e.exitCode); }`,
    );
    // Deno's own sandbox: reading is allowed, writing (needed to connect) is not.
    const { stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--no-lock", "--allow-read", script],
      stdin: "null",
      stderr: "inherit",
    }).output();
    assert.equal(new TextDecoder().decode(stdout).trim(), "PermissionError 4");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// A scripted QMP server, to test framing and races QEMU does not produce on demand.

interface FakeSession {
  /** Send raw bytes or text exactly as given. */
  send(data: string | Uint8Array): Promise<void>;
  /** The next JSON request from the client. */
  receive(): Promise<{ execute: string; id: string }>;
}

const GREETING = JSON.stringify({
  QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: "" }, capabilities: [] },
});

/** Run a one-connection fake QMP server with `serve`, and `fn` against a client connected to it. */
async function withFakeQmp(
  serve: (session: FakeSession) => Promise<void>,
  fn: (qmp: QmpClient) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qvm-qmp-fake-" });
  const listener = Deno.listen({ transport: "unix", path: `${dir}/qmp.sock` });
  const server = (async () => {
    const conn = await listener.accept();
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(4096);
    let text = "";
    const session: FakeSession = {
      async send(data) {
        const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
        let offset = 0;
        while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
      },
      async receive() {
        while (!text.includes("\n")) {
          const n = await conn.read(buffer);
          if (n === null) throw new Error("client went away");
          text += decoder.decode(buffer.subarray(0, n), { stream: true });
        }
        const line = text.slice(0, text.indexOf("\n"));
        text = text.slice(text.indexOf("\n") + 1);
        return JSON.parse(line);
      },
    };
    try {
      await session.send(GREETING + "\r\n");
      const caps = await session.receive();
      assert.equal(caps.execute, "qmp_capabilities");
      await session.send(JSON.stringify({ return: {}, id: caps.id }) + "\r\n");
      await serve(session);
    } finally {
      conn.close();
    }
  })();
  try {
    const qmp = await QmpClient.connect(`${dir}/qmp.sock`, { timeoutMs: 5000 });
    try {
      await fn(qmp);
    } finally {
      qmp.close();
      await qmp.closed;
    }
  } finally {
    listener.close();
    await server;
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("messages split across chunks, several per chunk and split UTF-8 are parsed", async () => {
  const event = (n: number) =>
    JSON.stringify({ event: "TEST", data: { n, text: "ünïcødé €" }, timestamp: {} });
  await withFakeQmp(async (session) => {
    const request = await session.receive();
    const reply = new TextEncoder().encode(
      event(1) + "\r\n" + event(2) + "\r\n" +
        JSON.stringify({ return: { text: "€uro" }, id: request.id }) + "\r\n",
    );
    // Byte by byte splits every message and every multi-byte character.
    for (let i = 0; i < reply.length; i += 3) {
      await session.send(reply.subarray(i, i + 3));
      if (i % 30 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }, async (qmp) => {
    assert.deepEqual(await qmp.execute("split"), { text: "€uro" });
    assert.deepEqual(qmp.events.map((e) => e.data), [
      { n: 1, text: "ünïcødé €" },
      { n: 2, text: "ünïcødé €" },
    ]);
    const second = await qmp.waitForEvent("TEST", { match: (e) => e.data?.n === 2 });
    assert.equal(second.data?.n, 2);
  });
});

Deno.test("replies arriving out of order reach the right caller", async () => {
  await withFakeQmp(async (session) => {
    const a = await session.receive();
    const b = await session.receive();
    await session.send(
      JSON.stringify({ return: b.execute, id: b.id }) + "\n" +
        JSON.stringify({ error: { class: "GenericError", desc: "nope" }, id: a.id }) + "\n",
    );
  }, async (qmp) => {
    const [a, b] = await Promise.allSettled([qmp.execute("a"), qmp.execute("b")]);
    assert.equal(a.status, "rejected");
    assert.ok(a.reason instanceof QmpError);
    assert.equal(a.reason.qmpClass, "GenericError");
    assert.equal(a.reason.message, "nope");
    assert.deepEqual(b, { status: "fulfilled", value: "b" });
  });
});

Deno.test("quit resolves when the server closes without replying", async () => {
  await withFakeQmp(async (session) => {
    assert.equal((await session.receive()).execute, "query-status");
    assert.equal((await session.receive()).execute, "quit");
  }, async (qmp) => {
    const other = qmp.execute("query-status");
    assert.equal(await qmp.execute("quit"), undefined);
    await assert.rejects(other, /QMP connection closed.*query-status/);
    await qmp.closed;
  });
});

Deno.test("execute times out with TimeoutError when no reply comes", async () => {
  await withFakeQmp(async (session) => {
    await session.receive();
    await session.receive(); // The client's next command proves it is still usable.
    await session.send(JSON.stringify({ return: 42, id: "qvm-3" }) + "\n");
    await session.receive().catch(() => {});
  }, async (qmp) => {
    await assert.rejects(qmp.execute("slow", {}, { timeoutMs: 100 }), TimeoutError);
    assert.equal(await qmp.execute("fast"), 42);
  });
});

Deno.test("a 128 MB reply is read in one pass, well within a 30 s timeout", async () => {
  // Scanning the whole buffer again on every read made this take minutes.
  const text = "0123456789abcdef€ü"; // Multi-byte characters end up split across reads.
  const pattern = new TextEncoder().encode(text);
  const copies = Math.ceil(128 * 1024 * 1024 / pattern.length);
  await withFakeQmp(async (session) => {
    const request = await session.receive();
    const body = new Uint8Array(copies * pattern.length);
    for (let i = 0; i < body.length; i += pattern.length) body.set(pattern, i);
    await session.send('{"return": {"blob": "');
    await session.send(body);
    await session.send(`"}, "id": "${request.id}"}\r\n`);
  }, async (qmp) => {
    const reply = await qmp.execute<{ blob: string }>("big", undefined, { timeoutMs: 30_000 });
    assert.equal(reply.blob.length, copies * text.length);
    assert.ok(reply.blob.startsWith(text.repeat(3)) && reply.blob.endsWith(text.repeat(3)));
  });
});

Deno.test("QEMU's query-qmp-schema (a large reply) arrives whole", async () => {
  await withQemu((vm) =>
    withClient(vm, async (qmp) => {
      const schema = await qmp.execute<{ name: string; "meta-type": string }[]>(
        "query-qmp-schema",
        undefined,
        { timeoutMs: 30_000 },
      );
      assert.ok(schema.length > 500, `${schema.length} entries`);
      assert.ok(schema.some((e) => e.name === "query-status" && e["meta-type"] === "command"));
      assert.equal((await qmp.execute<{ status: string }>("query-status")).status, "prelaunch");
    })
  );
});

Deno.test("an error reply without an id answers the first command still in flight", async () => {
  const readError = { class: "GenericError", desc: "JSON parse error, bad request" };
  await withFakeQmp(async (session) => {
    const a = await session.receive();
    const b = await session.receive();
    await session.send(JSON.stringify({ error: readError }) + "\r\n");
    await session.send(JSON.stringify({ return: b.execute, id: b.id }) + "\r\n");
    assert.equal(a.execute, "a");
  }, async (qmp) => {
    const [a, b] = await Promise.allSettled([
      qmp.execute("a", undefined, { timeoutMs: 20_000 }),
      qmp.execute("b", undefined, { timeoutMs: 20_000 }),
    ]);
    assert.equal(a.status, "rejected");
    assert.ok(a.reason instanceof QmpError, String(a.reason));
    assert.equal(a.reason.message, "JSON parse error, bad request");
    assert.equal(a.reason.command, "a");
    assert.deepEqual(b, { status: "fulfilled", value: "b" });
  });
});

Deno.test("an id-less error for a command that timed out is not taken for a later one", async () => {
  await withFakeQmp(async (session) => {
    await session.receive(); // "slow": its caller gives up before QEMU answers.
    const next = await session.receive();
    await session.send(JSON.stringify({ error: { class: "GenericError", desc: "late" } }) + "\n");
    await session.send(JSON.stringify({ return: "fine", id: next.id }) + "\n");
    const third = await session.receive();
    await session.send(JSON.stringify({ error: { class: "GenericError", desc: "bad" } }) + "\n");
    assert.equal(third.execute, "third");
  }, async (qmp) => {
    await assert.rejects(qmp.execute("slow", undefined, { timeoutMs: 100 }), TimeoutError);
    assert.equal(await qmp.execute("next", undefined, { timeoutMs: 20_000 }), "fine");
    await assert.rejects(
      qmp.execute("third", undefined, { timeoutMs: 20_000 }),
      (error) => error instanceof QmpError && error.message === "bad",
    );
  });
});

Deno.test("a request QEMU cannot read fails at once with QEMU's reason, and the session goes on", async () => {
  await withQemu((vm) =>
    withClient(vm, async (qmp) => {
      // A lone surrogate is valid for JSON.stringify but not for QEMU, which then cannot see the id.
      for (
        const [text, reason] of [["\ud800", /not a valid Unicode character/], ["\uffff", /UTF-8/]]
      ) {
        await assert.rejects(
          qmp.execute("qom-list", { path: text }, { timeoutMs: 20_000 }),
          (error) => {
            assert.ok(error instanceof QmpError, String(error));
            assert.match(error.message, /^JSON parse error/);
            assert.match(error.message, reason as RegExp);
            assert.equal(error.command, "qom-list");
            return true;
          },
        );
      }
      assert.equal((await qmp.execute<{ status: string }>("query-status")).status, "prelaunch");
    })
  );
});

/** A QMP arguments object whose `path` is `levels` arrays deep (the object itself is one more). */
function nested(levels: number): Record<string, unknown> {
  return JSON.parse(`{"path": ${"[".repeat(levels)}${"]".repeat(levels)}}`);
}

Deno.test("arguments nested deeper than QEMU reads are refused before sending; the limit itself passes", async () => {
  await withQemu((vm) =>
    withClient(vm, async (qmp) => {
      // QEMU reads 1024 levels counting the request object, so arguments may be 1023 deep.
      await assert.rejects(
        qmp.execute("qom-list", nested(1022), { timeoutMs: 20_000 }),
        (error) => error instanceof QmpError && /expected: string/.test(error.message),
      );
      for (const levels of [1023, 5000, 200_000]) {
        await assert.rejects(
          qmp.execute("qom-list", nested(levels), { timeoutMs: 20_000 }),
          (error) => {
            assert.ok(error instanceof UsageError, String(error));
            assert.equal(error.exitCode, 3);
            assert.match(
              error.message,
              new RegExp(`nested ${levels + 1} levels deep.*at most 1023`),
            );
            return true;
          },
        );
      }
      // Nothing was sent, so nothing is left to answer: the next command gets its own reply.
      assert.equal((await qmp.execute<{ status: string }>("query-status")).status, "prelaunch");
    })
  );
});

Deno.test("a request with more JSON tokens than QEMU reads is refused before sending", async () => {
  await withQemu((vm) =>
    withClient(vm, async (qmp) => {
      // 2^21 tokens is QEMU's limit: `[0,0,...]` has two per element.
      await assert.rejects(
        qmp.execute("qom-list", { path: new Array(1024 * 1024).fill(0) }, { timeoutMs: 20_000 }),
        (error) =>
          error instanceof UsageError &&
          /JSON tokens; QEMU reads at most 2097152/.test(error.message),
      );
      assert.equal((await qmp.execute<{ status: string }>("query-status")).status, "prelaunch");
    })
  );
});

Deno.test("measureJson counts nesting and tokens as QEMU's reader does", () => {
  const table: [string, number, number][] = [
    ["{}", 1, 2],
    ['{"a":1}', 1, 5],
    ['{"a":[1,2,{"b":null}]}', 3, 15],
    ['{"s":"x\\"{[\\\\"}', 1, 5],
    ["[ true , false , -1.5e+3 ]", 1, 7],
    ['"{[]}"', 0, 1],
  ];
  for (const [text, depth, tokens] of table) {
    assert.deepEqual(measureJson(text), { depth, tokens }, text);
  }
});
