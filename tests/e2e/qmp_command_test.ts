import assert from "node:assert/strict";
import { join } from "node:path";
import { QVM_MAIN, QvmEnv, type QvmResult, withEnv } from "../helpers/qvm.ts";
import { guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";

const KEY_LEFTSHIFT = 42;

/** Adds the test guest as `name`, boots it until its shell is up, and returns its id. */
async function bootGuest(env: QvmEnv, name: string): Promise<string> {
  const id = (await env.ok(["add", await guestConfig(env, { name })])).trim();
  await env.ok(["start", name, ...WAIT_READY]);
  return id;
}

function assertFails(result: QvmResult, code: number, message: RegExp) {
  assert.equal(result.code, code, `exit ${result.code}: ${result.stderr}`);
  assert.match(result.stderr, message);
  assert.equal(result.stderr.trim().split("\n").length, 1, `one line: ${result.stderr}`);
}

async function peripherals(env: QvmEnv, vm: string): Promise<string[]> {
  const out = await env.ok(["qmp", "run", vm, "qom-list", '{"path": "/machine/peripheral"}']);
  return JSON.parse(out).map((p: { name: string }) => p.name).filter((n: string) => n !== "type");
}

/** The guest's busybox shell on its serial console: run a command, get its output. */
class GuestShell {
  #conn: Deno.UnixConn;
  #text = "";
  #reading: Promise<void>;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#reading = this.#read();
  }

  static async open(env: QvmEnv, id: string): Promise<GuestShell> {
    const path = join(env.runtimeDir, `${id}.serial`);
    return new GuestShell(await Deno.connect({ transport: "unix", path }));
  }

  async #read() {
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(65536);
    try {
      while (true) {
        const n = await this.#conn.read(buffer);
        if (n === null) return;
        this.#text += decoder.decode(buffer.subarray(0, n), { stream: true });
      }
    } catch { /* closed */ }
  }

  /** Runs `command` and returns what it printed (the markers' echo is split so it never matches). */
  async run(command: string): Promise<string> {
    const from = this.#text.length;
    await this.#conn.write(
      new TextEncoder().encode(`echo QVM""-BEGIN; ${command}; echo QVM""-END\n`),
    );
    const pattern = /\nQVM-BEGIN\r?\n([\s\S]*?)QVM-END\r?\n/;
    assert.ok(
      await eventually(() => pattern.test(this.#text.slice(from)), { timeout: 30_000 }),
      `no output from '${command}': ${this.#text.slice(from)}`,
    );
    return this.#text.slice(from).match(pattern)![1];
  }

  async close() {
    this.#conn.close();
    await this.#reading;
  }
}

/**
 * Records the guest's keyboard (/dev/input/event0, the i8042 AT keyboard QEMU's send-key drives)
 * into a file; `keys()` reads back the EV_KEY events as [code, value] (1 press, 0 release).
 */
async function recordKeyboard(shell: GuestShell) {
  const name = await shell.run("cat /sys/class/input/event0/device/name");
  assert.match(name, /AT Translated Set 2 keyboard/);
  await shell.run(
    "cat /dev/input/event0 > /tmp/keys & P=$!; " +
      "until ls -l /proc/$P/fd 2>/dev/null | grep -q /dev/input; do sleep 0.1; done",
  );
  return {
    async keys(): Promise<[number, number][]> {
      // struct input_event on x86_64: 16 bytes of time, then u16 type, u16 code, s32 value.
      const dump = await shell.run("od -An -v -tu2 -w24 /tmp/keys");
      const events: [number, number][] = [];
      for (const line of dump.split("\n")) {
        const words = line.trim().split(/\s+/).map(Number);
        if (words.length === 12 && words[8] === 1) events.push([words[9], words[10]]);
      }
      return events;
    },
  };
}

/** Waits until the guest has seen `count` key events, and returns them. */
async function awaitKeys(recorder: Awaited<ReturnType<typeof recordKeyboard>>, count: number) {
  let seen: [number, number][] = [];
  await eventually(async () => (seen = await recorder.keys()).length >= count, { timeout: 30_000 });
  return seen;
}

/** A press and release of `code`, with shift held around it when `shift`. */
function stroke(code: number, shift = false): [number, number][] {
  const tap: [number, number][] = [[code, 1], [code, 0]];
  return shift ? [[KEY_LEFTSHIFT, 1], ...tap, [KEY_LEFTSHIFT, 0]] : tap;
}

Deno.test("qmp run prints a QMP command's return value as JSON; three at once all answer", async () => {
  await withEnv(async (env) => {
    await bootGuest(env, "r1");
    const status = JSON.parse(await env.ok(["qmp", "run", "r1", "query-status"]));
    assert.equal(status.status, "running");
    assert.equal(status.running, true);
    const version = JSON.parse(await env.ok(["qmp", "run", "r1", "query-version", "--json"]));
    assert.equal(typeof version.qemu.major, "number");
    assert.ok(version.qemu.major >= 7);
    const type = JSON.parse(
      await env.ok(["qmp", "run", "r1", "qom-get", '{"path": "/machine", "property": "type"}']),
    );
    assert.match(type, /machine/);

    const results = await Promise.all(
      [1, 2, 3].map(() => env.run(["qmp", "run", "r1", "query-status"])),
    );
    for (const r of results) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).status, "running");
    }
  });
});

Deno.test("qmp run: bad JSON args exit 3 with the reason; QMP errors exit 1 with class and desc", async () => {
  await withEnv(async (env) => {
    await bootGuest(env, "e1");
    assertFails(
      await env.run(["qmp", "run", "e1", "qom-get", "{path: 1}"]),
      3,
      /invalid JSON-ARGS: .*JSON/,
    );
    assertFails(
      await env.run(["qmp", "run", "e1", "qom-get", "[1, 2]"]),
      3,
      /JSON-ARGS: must be a JSON object/,
    );
    assertFails(
      await env.run(["qmp", "run", "e1", "no-such-command"]),
      1,
      /QMP no-such-command failed: CommandNotFound: The command no-such-command has not been found/,
    );
    assertFails(
      await env.run(["qmp", "run", "e1", "qom-get", "{}"]),
      1,
      /QMP qom-get failed: GenericError: .*path/,
    );
    // The VM is unharmed by all of it.
    assert.equal(JSON.parse(await env.ok(["qmp", "run", "e1", "query-status"])).status, "running");
  });
});

Deno.test("qmp pause and resume: status follows, and each prints the resulting state", async () => {
  await withEnv(async (env) => {
    await bootGuest(env, "p1");
    assert.equal((await env.ok(["qmp", "pause", "p1"])).trim(), "p1: paused");
    const paused = await env.status("p1");
    assert.equal(paused.status, "paused");
    assert.equal(paused.qemu_status, "paused");
    const again = JSON.parse(await env.ok(["qmp", "pause", "p1", "--json"]));
    assert.deepEqual([again.status, again.running], ["paused", false]);
    // Other qmp commands still work on a paused VM: QEMU is alive.
    assert.equal(JSON.parse(await env.ok(["qmp", "run", "p1", "query-status"])).status, "paused");

    assert.equal((await env.ok(["qmp", "resume", "p1"])).trim(), "p1: running");
    const running = await env.status("p1");
    assert.equal(running.status, "running");
    assert.equal(running.qemu_status, "running");
  });
});

Deno.test("qmp keys presses a chord the guest's keyboard sees; a bad key sends nothing", async () => {
  await withEnv(async (env) => {
    const id = await bootGuest(env, "k1");
    const shell = await GuestShell.open(env, id);
    try {
      const recorder = await recordKeyboard(shell);
      assertFails(
        await env.run(["qmp", "keys", "k1", "ctrl", "bogus"]),
        3,
        /unknown key 'bogus'/,
      );
      assert.equal((await env.ok(["qmp", "keys", "k1", "shift-a"])).trim(), "sent shift-a to k1");
      const json = JSON.parse(
        await env.ok(["qmp", "keys", "k1", "shift", "b", "--hold-time", "10", "--json"]),
      );
      assert.deepEqual(json.keys, ["shift", "b"]);
      assert.equal(json.hold_time_ms, 10);
      // KEY_A = 30, KEY_B = 48: pressed in order, released in reverse; nothing from 'ctrl bogus'.
      assert.deepEqual(await awaitKeys(recorder, 8), [...stroke(30, true), ...stroke(48, true)]);
    } finally {
      await shell.close();
    }
  });
});

Deno.test("qmp type sends US-layout key codes with shift for capitals and symbols", async () => {
  await withEnv(async (env) => {
    const id = await bootGuest(env, "t1");
    const shell = await GuestShell.open(env, id);
    try {
      const recorder = await recordKeyboard(shell);
      // An untypable character is refused before anything is sent, even the 'ab' before it.
      assertFails(
        await env.run(["qmp", "type", "t1", "ab€"]),
        3,
        /cannot type '€' \(U\+20AC\) at position 3/,
      );
      assertFails(
        await env.run(["qmp", "type", "t1", "héllo"]),
        3,
        /cannot type 'é' \(U\+00E9\) at position 2/,
      );
      assert.equal(
        (await env.ok(["qmp", "type", "t1", "aZ1!{ \t\n"])).trim(),
        "typed 8 characters into t1",
      );
      const json = JSON.parse(await env.ok(["qmp", "type", "t1", "--json", "--", "-?"]));
      assert.equal(json.characters, 2);
      const expected = [
        ...stroke(30), // a
        ...stroke(44, true), // Z
        ...stroke(2), // 1
        ...stroke(2, true), // !
        ...stroke(26, true), // { (KEY_LEFTBRACE)
        ...stroke(57), // space
        ...stroke(15), // tab
        ...stroke(28), // newline: KEY_ENTER
        ...stroke(12), // - (KEY_MINUS)
        ...stroke(53, true), // ? (KEY_SLASH)
      ];
      assert.deepEqual(await awaitKeys(recorder, expected.length), expected);
    } finally {
      await shell.close();
    }
  });
});

Deno.test("qmp screendump writes a valid PNG for .png and PPM otherwise, at an absolute path", async () => {
  await withEnv(async (env) => {
    await bootGuest(env, "s1");
    const png = join(env.root, "screen.png");
    assert.equal((await env.ok(["qmp", "screendump", "s1", png])).trim(), png);
    const pngBytes = await Deno.readFile(png);
    assert.deepEqual([...pngBytes.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
    assert.equal(new TextDecoder().decode(pngBytes.subarray(12, 16)), "IHDR");
    const view = new DataView(pngBytes.buffer, pngBytes.byteOffset);
    const [width, height] = [view.getUint32(16), view.getUint32(20)];
    assert.ok(width > 0 && height > 0, `${width}x${height}`);

    // A relative FILE is resolved against qvm's working directory, not QEMU's.
    const rel = await env.run(["qmp", "screendump", "s1", "screen.ppm", "--json"], {
      cwd: env.root,
    });
    assert.equal(rel.code, 0, rel.stderr);
    const ppm = join(env.root, "screen.ppm");
    const json = JSON.parse(rel.stdout);
    assert.equal(json.file, ppm);
    assert.equal(json.format, "ppm");
    const ppmBytes = await Deno.readFile(ppm);
    assert.equal(json.bytes, ppmBytes.length);
    const header = new TextDecoder("latin1").decode(ppmBytes.subarray(0, 32));
    const m = header.match(/^P6\n(\d+) (\d+)\n255\n/);
    assert.ok(m, `PPM header: ${JSON.stringify(header)}`);
    assert.deepEqual([Number(m[1]), Number(m[2])], [width, height]);
    assert.equal(ppmBytes.length, m[0].length + width * height * 3);

    assertFails(
      await env.run(["qmp", "screendump", "s1", join(env.root, "no-such-dir", "x.png")]),
      1,
      /QMP screendump failed: GenericError: .*No such file or directory/,
    );
  });
});

Deno.test("qmp device-add hot-plugs a PCI device and device-del waits until it is gone", async () => {
  await withEnv(async (env) => {
    await bootGuest(env, "d1");
    assert.equal(
      (await env.ok(["qmp", "device-add", "d1", "virtio-rng-pci", "rng1", "max-bytes=2048"]))
        .trim(),
      "added virtio-rng-pci 'rng1' to d1",
    );
    assert.deepEqual(await peripherals(env, "d1"), ["rng1"]);
    const pci = JSON.parse(await env.ok(["qmp", "run", "d1", "query-pci"]));
    const ids = pci[0].devices.map((d: { qdev_id: string }) => d.qdev_id);
    assert.ok(ids.includes("rng1"), JSON.stringify(ids));
    const maxBytes = await env.ok([
      "qmp",
      "run",
      "d1",
      "qom-get",
      '{"path": "/machine/peripheral/rng1", "property": "max-bytes"}',
    ]);
    assert.equal(JSON.parse(maxBytes), 2048);

    assertFails(
      await env.run(["qmp", "device-add", "d1", "virtio-rng-pci", "rng1"]),
      1,
      /QMP device_add failed: GenericError: Duplicate device ID 'rng1'/,
    );
    assertFails(
      await env.run(["qmp", "device-add", "d1", "no-such-driver", "x1"]),
      1,
      /QMP device_add failed: GenericError: .*no-such-driver/,
    );
    assertFails(
      await env.run(["qmp", "device-add", "d1", "virtio-rng-pci", "x2", "max-bytes"]),
      3,
      /invalid property 'max-bytes': use KEY=VALUE/,
    );

    const del = JSON.parse(await env.ok(["qmp", "device-del", "d1", "rng1", "--json"]));
    assert.deepEqual([del.device, del.removed], ["rng1", true]);
    assert.deepEqual(await peripherals(env, "d1"), []);
    assertFails(
      await env.run(["qmp", "device-del", "d1", "rng1"]),
      1,
      /QMP device_del failed: DeviceNotFound: .*rng1/,
    );

    // --no-wait returns once QEMU took the request; the guest still completes it.
    await env.ok(["qmp", "device-add", "d1", "virtio-rng-pci", "rng3"]);
    assert.equal(
      (await env.ok(["qmp", "device-del", "d1", "rng3", "--no-wait"])).trim(),
      "asked d1 to remove 'rng3'",
    );
    assert.ok(
      await eventually(async () => (await peripherals(env, "d1")).length === 0, {
        timeout: 30_000,
      }),
    );
  });
});

Deno.test("qmp device-del times out (exit 2) when the guest does not release the device", async () => {
  await withEnv(async (env) => {
    await bootGuest(env, "d2");
    await env.ok(["qmp", "device-add", "d2", "virtio-rng-pci", "rng2"]);
    // A paused guest cannot answer the ACPI unplug request.
    await env.ok(["qmp", "pause", "d2"]);
    assertFails(
      await env.run(["qmp", "device-del", "d2", "rng2", "--timeout", "2"]),
      2,
      /device 'rng2' of d2 was not removed within 2 s: the guest did not release it/,
    );
    assert.deepEqual(await peripherals(env, "d2"), ["rng2"]);
    // The request stays pending: once the guest runs, it completes.
    await env.ok(["qmp", "resume", "d2"]);
    assert.ok(
      await eventually(async () => (await peripherals(env, "d2")).length === 0, {
        timeout: 30_000,
      }),
    );
  });
});

Deno.test("every qmp subcommand on a VM that is not running exits 3 and says so", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "off" })]);
    const commands = [
      ["run", "off", "query-status"],
      ["keys", "off", "ctrl-alt-delete"],
      ["type", "off", "hello"],
      ["screendump", "off", join(env.root, "x.png")],
      ["pause", "off"],
      ["resume", "off"],
      ["device-add", "off", "virtio-rng-pci", "rng0"],
      ["device-del", "off", "rng0"],
    ];
    for (const args of commands) {
      assertFails(
        await env.run(["qmp", ...args]),
        3,
        /VM 'off' is not running \(status: created\)/,
      );
    }
    assertFails(await env.run(["qmp", "run", "ghost", "query-status"]), 3, /ghost/);
  });
});

Deno.test("qmp arguments are checked before the VM is looked at", async () => {
  await withEnv(async (env) => {
    const cases: [string[], RegExp][] = [
      [["run", "ghost", "x", "{"], /invalid JSON-ARGS/],
      [["run", "ghost", "x", deepArgs(1023)], /invalid JSON-ARGS: .* 1024 levels deep.* 1023/],
      [["run", "ghost", "x", deepArgs(50_000)], /invalid JSON-ARGS: .* 50001 levels deep/],
      [["keys", "ghost", "ctrl-alt-delet"], /unknown key 'delet'/],
      [["keys", "ghost", "a", "--hold-time", "soon"], /invalid --hold-time 'soon'/],
      [["type", "ghost", "😀"], /cannot type '😀' \(U\+1F600\) at position 1/],
      [["screendump", "ghost", "x.jpg", "--format", "jpg"], /invalid --format 'jpg'/],
      [["device-add", "ghost", "virtio-rng-pci", "r", "id=x"], /given as the ID argument/],
      [["pause", "ghost", "--timeout", "0"], /invalid --timeout '0'/],
      [["frobnicate", "ghost"], /unknown subcommand 'frobnicate'/],
      [["keys", "ghost"], /missing argument KEY/],
    ];
    for (const [args, message] of cases) assertFails(await env.run(["qmp", ...args]), 3, message);
  });
});

/** JSON-ARGS whose `path` is `levels` arrays deep (the object itself is one level more). */
function deepArgs(levels: number): string {
  return `{"path": ${"[".repeat(levels)}${"]".repeat(levels)}}`;
}

/** Runs `qvm ARGS | head -c 100` in bash; qvm's exit code (PIPESTATUS) and its stderr. */
async function runIntoHead(env: QvmEnv, args: string[]): Promise<QvmResult> {
  const out = await new Deno.Command("bash", {
    args: [
      "-c",
      '"$@" 2>"$QVM_ERR" | head -c 100 >/dev/null; echo "${PIPESTATUS[0]}"',
      "bash",
      Deno.execPath(),
      ...["run", "-A", "--quiet", QVM_MAIN, ...args],
    ],
    env: {
      QVM_DATA_DIR: env.dataDir,
      QVM_RUNTIME_DIR: env.runtimeDir,
      NO_COLOR: "1",
      QVM_ERR: join(env.root, "head.err"),
    },
    stdin: "null",
  }).output();
  return {
    code: Number(new TextDecoder().decode(out.stdout).trim()),
    stdout: "",
    stderr: await Deno.readTextFile(join(env.root, "head.err")),
  };
}

Deno.test("qmp run: a request QEMU cannot read fails at once with QEMU's reason, exit 1", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "u1" })]);
    await env.ok(["start", "u1", "--wait-for", "qmp"]);
    // A lone surrogate: valid JSON for qvm, but QEMU cannot read the request (so it sees no id).
    for (
      const [args, reason] of [
        ['{"path": "\\ud800"}', /\\ud800 is not a valid Unicode character/],
        ['{"path": "\\uffff"}', /invalid UTF-8 sequence/],
      ] as const
    ) {
      assertFails(
        await env.run(["qmp", "run", "u1", "qom-list", args, "--timeout", "20"]),
        1,
        new RegExp(`QMP qom-list failed: GenericError: JSON parse error, ${reason.source}`),
      );
    }
    // QEMU's limit on nesting is refused before anything is sent; one level less reaches QEMU.
    assertFails(
      await env.run(["qmp", "run", "u1", "qom-list", deepArgs(1023), "--timeout", "20"]),
      3,
      /invalid JSON-ARGS: QMP qom-list arguments are nested 1024 levels deep; QEMU reads at most 1023/,
    );
    assertFails(
      await env.run(["qmp", "run", "u1", "qom-list", deepArgs(1022), "--timeout", "20"]),
      1,
      /QMP qom-list failed: GenericError: Invalid parameter type for 'path', expected: string/,
    );
    assert.equal(JSON.parse(await env.ok(["qmp", "run", "u1", "query-status"])).status, "running");
  });
});

Deno.test("qmp run into a reader that stops early (| head) exits 0 quietly", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "h1" })]);
    await env.ok(["start", "h1", "--wait-for", "qmp"]);
    // The schema is far larger than a pipe's buffer, so qvm is still writing when head leaves.
    for (const extra of [[], ["--json"]]) {
      const result = await runIntoHead(env, ["qmp", "run", "h1", "query-qmp-schema", ...extra]);
      assert.equal(result.stderr, "");
      assert.equal(result.code, 0);
    }
    assert.equal(JSON.parse(await env.ok(["qmp", "run", "h1", "query-status"])).status, "running");
  });
});
