/**
 * The one readiness wait's pure parts: the parser of wait specs (what each command accepts), the
 * serial console scanner, and the shared options of the commands that wait.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  parseWaitSpec,
  parseWaitTarget,
  SerialScanner,
  START_WAITS,
  STATE_WAITS,
} from "../../src/vm/ready.ts";
import { parseWaitForOption } from "../../src/cli/_options.ts";
import { spec as startSpec } from "../../src/cli/start.ts";
import { spec as restartSpec } from "../../src/cli/restart.ts";
import { spec as launchSpec } from "../../src/cli/launch.ts";
import { UsageError } from "../../src/errors.ts";

/** Runs `fn` with the path of a serial log in a fresh temporary folder, removed afterwards. */
async function withLog(fn: (log: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(join(dir, "serial.log"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("one parser of wait specs takes what each command accepts, and nothing else", () => {
  for (const kind of ["process", "qmp", "ssh", "agent"]) {
    assert.deepEqual(parseWaitSpec(kind, START_WAITS), { kind });
  }
  for (const kind of ["running", "stopped", "ssh", "agent"]) {
    assert.deepEqual(parseWaitSpec(kind, STATE_WAITS), { kind });
  }
  assert.deepEqual(parseWaitSpec("serial:a:b ", START_WAITS), { kind: "serial", text: "a:b " });
  assert.deepEqual(parseWaitTarget("serial:x"), { kind: "serial", text: "x" });
  // A kind of the other command, a bare `serial`, or an empty text is not a spec.
  for (const value of ["running", "stopped", "serial", "serial:", "", "SSH"]) {
    assert.equal(parseWaitSpec(value, START_WAITS), undefined, value);
  }
  for (const value of ["process", "qmp", "serial", "serial:"]) {
    assert.equal(parseWaitSpec(value, STATE_WAITS), undefined, value);
  }
});

Deno.test("start, restart and launch share one --wait-for: one help text, one refusal", () => {
  const texts = [startSpec, restartSpec, launchSpec].map((s) =>
    s.options["wait-for"].description.replace(/ \(default\)|default; /, "")
  );
  assert.equal(new Set(texts).size, 1, texts.join("\n"));
  assert.match(startSpec.options["wait-for"].description, /qmp \(default\)/);
  assert.match(launchSpec.options["wait-for"].description, /ssh \(default; /);
  assert.deepEqual(parseWaitForOption(undefined, "ssh"), { kind: "ssh" });
  assert.throws(
    () => parseWaitForOption("telnet", "qmp"),
    (err) =>
      err instanceof UsageError &&
      err.message === "invalid --wait-for 'telnet': use process, qmp, serial:TEXT, ssh or agent",
  );
});

Deno.test("the serial scanner finds text split across two reads, even inside one UTF-8 character", () =>
  withLog(async (log) => {
    await Deno.writeTextFile(log, "an earlier run's é-MARK\n");
    const from = (await Deno.stat(log)).size;
    const scanner = new SerialScanner(log, "é-MARK", from);
    assert.equal(await scanner.found(), false, "what was there before the offset does not count");
    const bytes = new TextEncoder().encode("boot é-MARK\n");
    const cut = "boot ".length + 1; // between the two bytes of 'é'
    await Deno.writeFile(log, bytes.subarray(0, cut), { append: true });
    assert.equal(await scanner.found(), false);
    await Deno.writeFile(log, bytes.subarray(cut), { append: true });
    assert.equal(await scanner.found(), true);
  }));

Deno.test("the serial scanner reads a log that is missing, then replaced by a shorter one", () =>
  withLog(async (log) => {
    const scanner = new SerialScanner(log, "login:", 1000);
    assert.equal(await scanner.found(), false, "no log yet");
    await Deno.writeTextFile(log, "Debian login:");
    assert.equal(await scanner.found(), true, "a log shorter than the offset is read from 0");
  }));
