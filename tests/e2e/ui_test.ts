import assert from "node:assert/strict";
import { QVM_MAIN, QvmEnv, withEnv } from "../helpers/qvm.ts";
import { GUEST_READY_MARKER, guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { FIELDS, fillTemplate, formatUptime, parseFormat, type Row } from "../../src/cli/ls.ts";
import { processUptime } from "../../src/vm/list.ts";
import { formatSeconds, lastLineAfter, printable } from "../../src/progress.ts";
import { leftRunning } from "../../src/cli/start.ts";

const ESC = String.fromCharCode(27);

/** What qvm wrote to a pseudo-terminal, with the time each chunk arrived (ms after spawn). */
interface TtyRun {
  code: number;
  chunks: { at: number; text: string }[];
  text: string;
}

function shellWord(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * Runs `qvm ARGS` under a real pseudo-terminal (util-linux `script`): stdout and stderr are both
 * the terminal, as for a person at a shell.
 */
async function runInTty(
  env: QvmEnv,
  args: string[],
  options: { env?: Record<string, string>; interruptWhen?: (text: string) => boolean } = {},
): Promise<TtyRun> {
  const command = "exec " +
    [Deno.execPath(), "run", "-A", "--quiet", QVM_MAIN, ...args].map(shellWord).join(" ");
  const vars: Record<string, string> = {
    QVM_DATA_DIR: env.dataDir,
    QVM_RUNTIME_DIR: env.runtimeDir,
    COLUMNS: "200",
    ...options.env,
  };
  const clean = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => k !== "NO_COLOR"),
  );
  const child = new Deno.Command("script", {
    args: ["-qfec", command, "/dev/null"],
    env: { ...clean, ...vars },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const began = Date.now();
  const chunks: { at: number; text: string }[] = [];
  const decoder = new TextDecoder();
  let interrupted = false;
  const reading = (async () => {
    for await (const chunk of child.stdout) {
      chunks.push({ at: Date.now() - began, text: decoder.decode(chunk, { stream: true }) });
      if (!interrupted && options.interruptWhen?.(chunks.map((c) => c.text).join(""))) {
        interrupted = true;
        // Ctrl-C as the terminal sends it: SIGINT to qvm (script's child, exec'd by its shell).
        const kids = Deno.readTextFileSync(`/proc/${child.pid}/task/${child.pid}/children`);
        for (const pid of kids.trim().split(/\s+/).filter(Boolean)) {
          Deno.kill(Number(pid), "SIGINT");
        }
      }
    }
  })();
  const stderr = child.stderr.pipeTo(new WritableStream());
  const status = await child.status;
  await reading;
  await stderr;
  return { code: status.code, chunks, text: chunks.map((c) => c.text).join("") };
}

/** The progress frames drawn (each starts with carriage return + erase line), in order. */
function frames(text: string): string[] {
  return text.split("\r").filter((f) => f.startsWith(`${ESC}[2K`) && f.length > 4)
    .map((f) => f.slice(4).replace(new RegExp(`${ESC}\\[[0-9;]*m`, "g"), ""));
}

Deno.test("start --wait-for on a terminal shows what it waits for, updating in place; piped it shows none", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "tty1" })]);
    const tty = await runInTty(env, ["start", "tty1", ...WAIT_READY]);
    assert.equal(tty.code, 0, tty.text);
    const drawn = frames(tty.text).filter((f) => f.includes("starting tty1"));
    const waiting = drawn.filter((f) =>
      f.includes(`waiting for "${GUEST_READY_MARKER}" on the serial console`)
    );
    assert.ok(waiting.length >= 2, `progress frames: ${JSON.stringify(drawn)}`);
    // It updates: the elapsed time moves on between frames.
    assert.ok(new Set(waiting).size >= 2, JSON.stringify(waiting));
    // The line is cleared before the result, which stays on screen.
    assert.match(
      tty.text,
      new RegExp(`\\r${ESC.replace("\x1b", "\\x1b")}\\[2Kstarted tty1 \\(pid \\d+\\)`),
    );
    const first = tty.chunks.find((c) => c.text.includes("starting tty1"));
    const done = tty.chunks.find((c) => c.text.includes("started tty1"));
    assert.ok(first && done && first.at < done.at);
    console.log(`first progress frame after ${first!.at} ms, result after ${done!.at} ms`);
    // Colour on a terminal (the spinner), unless NO_COLOR.
    assert.ok(tty.text.includes(`${ESC}[36m`));
    await env.ok(["stop", "tty1", "--force"]);

    const piped = await env.run(["start", "tty1", ...WAIT_READY]);
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stdout.trim().split("\n").length, 1);
    assert.doesNotMatch(piped.stdout + piped.stderr, /\r|waiting for/);
    assert.ok(!(piped.stdout + piped.stderr).includes(ESC));
  });
});

Deno.test("no progress on a terminal with --json or --quiet; NO_COLOR keeps it but without colour", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "tty2" })]);
    const json = await runInTty(env, ["start", "tty2", ...WAIT_READY, "--json"]);
    assert.equal(json.code, 0, json.text);
    assert.doesNotMatch(json.text, /waiting for/);
    assert.ok(!json.text.includes(`${ESC}[2K`));
    assert.equal(JSON.parse(json.text.replaceAll("\r", "")).status, "running");
    const quietStop = await runInTty(env, ["stop", "tty2", "--quiet"]);
    assert.equal(quietStop.code, 0, quietStop.text);
    assert.doesNotMatch(quietStop.text, /stopping/);
    assert.ok(!quietStop.text.includes(`${ESC}[2K`));
    assert.match(quietStop.text, /stopped tty2 \(ACPI power-off\)/);

    const plain = await runInTty(env, ["start", "tty2", ...WAIT_READY], {
      env: { NO_COLOR: "1" },
    });
    assert.equal(plain.code, 0, plain.text);
    assert.ok(frames(plain.text).some((f) => f.includes("starting tty2: waiting for")));
    assert.ok(![`${ESC}[36m`, `${ESC}[2m`].some((c) => plain.text.includes(c)));
  });
});

Deno.test("stop on a terminal names the escalation step and the time left in it", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "deaf", acpi: false })]);
    await env.ok(["start", "deaf", ...WAIT_READY]);
    const tty = await runInTty(env, ["stop", "deaf", "--timeout", "4"]);
    assert.equal(tty.code, 0, tty.text);
    const drawn = frames(tty.text);
    assert.ok(
      drawn.some((f) => /stopping deaf: ACPI power-off · \d+(\.\d)?s left/.test(f)),
      JSON.stringify(drawn),
    );
    assert.ok(drawn.some((f) => /stopping deaf: QMP quit · /.test(f)), JSON.stringify(drawn));
    assert.match(tty.text, /stopped deaf \(QMP quit\)/);
  });
});

Deno.test("progress line helpers: seconds, a guest's last line made harmless", async () => {
  assert.equal(formatSeconds(400), "0.4s");
  assert.equal(formatSeconds(12_300), "12s");
  assert.equal(formatSeconds(125_000), "2m05s");
  assert.equal(printable(`a${ESC}[2J${ESC}[31mb\u0007c\r`), "abc");
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/serial.log`;
    await Deno.writeTextFile(file, "old boot\nlast of old\n");
    const offset = (await Deno.stat(file)).size;
    assert.equal(lastLineAfter(file, offset), "");
    await Deno.writeTextFile(file, `Booting\r\n${ESC}[1mlogin: ${ESC}[0m\r\n\r\n`, {
      append: true,
    });
    assert.equal(lastLineAfter(file, offset), "login:");
    assert.equal(lastLineAfter(`${dir}/missing`, 0), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ls --format: table, json, column lists and templates; bad ones name the fields", async () => {
  assert.equal(parseFormat(undefined), undefined);
  assert.equal(parseFormat("table"), undefined);
  assert.deepEqual(parseFormat("json"), { kind: "json" });
  assert.deepEqual(parseFormat("name, STATUS,ssh"), {
    kind: "table",
    columns: ["name", "status", "ssh"],
  });
  assert.deepEqual(parseFormat("{{.Name}}\\t{{ .ssh }}"), {
    kind: "template",
    template: "{{.Name}}\t{{ .ssh }}",
  });
  assert.throws(() => parseFormat("name,colour"), /column list of name, status/);
  assert.throws(() => parseFormat("{{.Colour}}"), /unknown field 'Colour'/);
  for (const bad of ["{{.Name", "{{.Name | upper}}", "{{}}", "{{.Name}} }}", "{{.Name.Id}}"]) {
    assert.throws(() => parseFormat(bad), /invalid template/, bad);
  }
  const row = Object.fromEntries(FIELDS.map((f) => [f, f.toUpperCase()])) as Row;
  assert.equal(fillTemplate("{{.Name}} {{status}} {{ .Ssh }}", row), "NAME STATUS SSH");
  assert.equal(formatUptime(42), "42s");
  assert.equal(formatUptime(12 * 60 + 5), "12m");
  assert.equal(formatUptime(3 * 3600 + 5 * 60), "3h05m");
  assert.equal(formatUptime(2 * 86400 + 4 * 3600), "2d04h");
  // This process is at least as old as this module's runtime (in one `deno test` of many files
  // it is much older: a bound from above failed there); a process started now is seconds old.
  const own = processUptime(Deno.pid);
  const age = performance.now() / 1000;
  assert.ok(own !== undefined && own >= age - 1, `${own} s, runtime ${age} s`);
  const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    const young = processUptime(child.pid);
    assert.ok(young !== undefined && young >= 0 && young < 10, `a new process: ${young} s`);
  } finally {
    child.kill();
    await child.status;
  }
});

Deno.test("ls shows a running VM's uptime and colours its status on a terminal only", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "lsv" })]);
    await env.ok(["add", "--empty", "--name", "idle"]);
    await env.ok(["start", "lsv", "--wait-for", "qmp"]);
    const plain = await env.run(["ls"]);
    assert.match(plain.stdout, /^NAME\s+STATUS\s+PID\s+UPTIME\s+ID$/m);
    assert.match(plain.stdout, /^lsv\s+running\s+\d+\s+\d+s\s+/m);
    assert.match(plain.stdout, /^idle\s+created\s+-\s+-\s+/m);
    assert.ok(!plain.stdout.includes(ESC));
    const tty = await runInTty(env, ["ls"]);
    assert.ok(tty.text.includes(`${ESC}[32mrunning${ESC}[0m`), tty.text);
    const noColor = await runInTty(env, ["ls"], { env: { NO_COLOR: "1" } });
    assert.ok(!noColor.text.includes(ESC));
    assert.equal(
      await env.ok(["ls", "--format", "{{.Name}}:{{.Status}}:{{.Ssh}}"]),
      "idle:created:-\nlsv:running:-\n",
    );
    assert.match(
      await env.ok(["ls", "--format", "name,uptime"]),
      /^NAME\s+UPTIME\nidle\s+-\nlsv\s+\d+s\n$/,
    );
    const json = JSON.parse(await env.ok(["ls", "--format", "json"]));
    assert.deepEqual(Object.keys(json[0]), ["id", "name", "status", "pid", "stop_reason"]);
    assert.equal((await env.run(["ls", "--format", "name,colour"])).code, 3);
    const unclosed = await env.run(["ls", "--format", "{{.Name"]);
    assert.equal(unclosed.code, 3);
    assert.equal(unclosed.stdout, "");
    assert.equal(unclosed.stderr.trim().split("\n").length, 1);
    await env.ok(["stop", "lsv", "--force"]);
    // A VM forwarding a host port to guest port 22 shows it, in an SSH column of its own.
    const net = 'network:\n  ports: ["auto:22"]\n';
    await env.ok(["add", await guestConfig(env, { name: "netv", extra: net })]);
    await env.ok(["start", "netv", "--wait-for", "qmp"]);
    const withSsh = await env.ok(["ls"]);
    // ...and a VM that ended says how, in a REASON column.
    assert.match(withSsh, /^NAME\s+STATUS\s+PID\s+UPTIME\s+SSH\s+ID\s+REASON$/m);
    assert.match(withSsh, /^netv\s+running\s+\d+\s+\d+s\s+127\.0\.0\.1:\d+\s+\S+\s+-$/m);
    assert.match(withSsh, /^lsv\s+stopped\s+-\s+-\s+-\s+\S+\s+stopped by qvm \(SIGKILL\)$/m);
    const port = JSON.parse(await env.ok(["ports", "netv", "--json"]));
    assert.match(JSON.stringify(port), new RegExp(withSsh.match(/127\.0\.0\.1:(\d+)/)![1]));
    await env.ok(["stop", "netv", "--force"]);
  });
});

Deno.test("disk creation, live snapshots and storage verify show progress on a terminal only", async () => {
  await withEnv(async (env) => {
    const extra = "storage:\n  - name: hdd\n    size: 64M\n";
    await env.ok(["add", await guestConfig(env, { name: "disky", extra })]);
    const start = await runInTty(env, ["start", "disky", ...WAIT_READY]);
    assert.equal(start.code, 0, start.text);
    assert.ok(
      frames(start.text).some((f) => /starting disky: preparing disk .*hdd\.qcow2/.test(f)),
      JSON.stringify(frames(start.text)),
    );
    const snap = await runInTty(env, ["snapshot", "create", "disky", "s1"]);
    assert.equal(snap.code, 0, snap.text);
    assert.ok(frames(snap.text).some((f) => f.includes("snapshot create disky s1 · ")), snap.text);
    assert.match(snap.text, /created snapshot 's1' on hdd \(live, VM state\)/);
    const verify = await runInTty(env, ["storage", "verify", "disky"]);
    assert.ok(frames(verify.text).some((f) => /verifying disks: \d of 1 checked/.test(f)));
    for (
      const args of [["snapshot", "load", "disky", "s1"], ["storage", "verify", "disky"]]
    ) {
      const piped = await env.run(args);
      assert.ok(!(piped.stdout + piped.stderr).includes(ESC), args.join(" "));
      assert.doesNotMatch(piped.stdout + piped.stderr, /\r/);
    }
    await env.ok(["stop", "disky", "--force"]);
  });
});

Deno.test("a start timing out on a terminal shows the guest's last serial line, then one error line", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "tty3" })]);
    const tty = await runInTty(env, [
      "start",
      "tty3",
      "--wait-for",
      "serial:NEVER-PRINTED",
      "--timeout",
      // Long enough for the guest's first serial line on a loaded machine (8 s was not, at load 20).
      "20",
    ]);
    assert.equal(tty.code, 2, tty.text);
    const tails = frames(tty.text).flatMap((f) => f.match(/ · serial: (.+)$/)?.[1] ?? []);
    assert.ok(tails.length > 0, JSON.stringify(frames(tty.text)));
    // The guest's own output is shown made printable: no escape sequence of its gets through.
    assert.ok(tails.every((t) => !t.includes(ESC) && t.trim() !== ""));
    assert.match(
      tty.text.replaceAll(ESC, "<ESC>"),
      /\r<ESC>\[2Kqvm: 'NEVER-PRINTED' did not appear on the serial console/,
    );
  });
});

Deno.test("wait and restart show progress on a terminal; Ctrl-C clears the line and exits 130", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "tty4" })]);
    // Nothing starts it: interrupted while waiting.
    const waited = await runInTty(env, ["wait", "tty4", "--for", "running", "--timeout", "60"], {
      interruptWhen: (text) =>
        frames(text).some((f) => /waiting for tty4 to reach running · .* status: created/.test(f)),
    });
    assert.equal(waited.code, 130, waited.text.slice(-300));
    assert.ok(waited.text.endsWith(`\r${ESC}[2K`), JSON.stringify(waited.text.slice(-80)));
    await env.ok(["start", "tty4", ...WAIT_READY]);
    const restart = await runInTty(env, ["restart", "tty4", ...WAIT_READY]);
    assert.equal(restart.code, 0, restart.text);
    const drawn = frames(restart.text);
    assert.ok(
      drawn.some((f) => /restarting tty4: ACPI power-off · [\d.]+s left/.test(f)),
      restart.text,
    );
    assert.ok(
      drawn.some((f) => f.includes(`restarting tty4: waiting for "${GUEST_READY_MARKER}"`)),
    );
    assert.match(restart.text, /restarted tty4 \(stopped by ACPI power-off; pid \d+\)/);
    await env.ok(["stop", "tty4", "--force"]);
  });
});

Deno.test("the line for starts interrupted while waiting names each VM left running and the stop command", () => {
  assert.equal(leftRunning(new Map(), "SSH"), undefined, "nothing launched yet: nothing to say");
  assert.equal(
    leftRunning(new Map([["a", 11]]), "SSH"),
    "qvm: interrupted while waiting for SSH: VM 'a' (pid 11) was left running; stop it with " +
      "'qvm stop a'",
  );
  assert.equal(
    leftRunning(new Map([["a", 11], ["b", 12]]), "SSH"),
    "qvm: interrupted while waiting for SSH: VMs 'a' (pid 11), 'b' (pid 12) were left running; " +
      "stop them with 'qvm stop a b'",
  );
});

Deno.test("Ctrl-C during start --wait-for says the VM was left running and how to stop it, on a terminal and piped", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", await guestConfig(env, { name: "int1" })]);
    const left = (pid: number | string) =>
      `qvm: interrupted while waiting for "NEVER" on the serial console: VM 'int1' (pid ${pid}) ` +
      `was left running; stop it with 'qvm stop int1'`;
    const start = ["start", "int1", "--wait-for", "serial:NEVER", "--timeout", "60"];
    const tty = await runInTty(env, start, {
      interruptWhen: (text) => frames(text).some((f) => f.includes('waiting for "NEVER"')),
    });
    assert.equal(tty.code, 130, tty.text.slice(-300));
    const status = await env.status("int1");
    assert.equal(status.status, "running");
    assert.ok(
      tty.text.includes(`${ESC}[2K${left(status.pid)}`),
      JSON.stringify(tty.text.slice(-300)),
    );
    await env.ok(["stop", "int1", "--force"]);

    const child = env.command(start).spawn();
    const running = async () => (await env.status("int1")).status === "running";
    let waited = false;
    for (let i = 0; i < 100 && !waited; i++) {
      waited = await running();
      if (!waited) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(waited, "the start got to its wait");
    child.kill("SIGINT");
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 130, stderr);
    const pid = (await env.status("int1")).pid;
    assert.equal(stderr, `${left(pid)}\n`);
    await env.ok(["stop", "int1", "--force"]);
  });
});
