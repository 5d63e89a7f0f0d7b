/** Test helpers for snapshots: qemu-img facts read independently of qvm, and a guest's console. */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import type { QvmEnv } from "./qvm.ts";
import { guestConfig } from "./guest.ts";

/** Runs a host tool and returns its exit code and everything it printed. */
export async function tool(name: string, args: string[]): Promise<{ code: number; out: string }> {
  const out = await new Deno.Command(name, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  return { code: out.code, out: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

/** Snapshot names in the image, read independently of qvm (with -U: a running VM's too). */
export async function imageSnapshotNames(file: string): Promise<string[]> {
  const { code, out } = await tool("qemu-img", ["info", "-U", "--output=json", file]);
  assert.equal(code, 0, out);
  return (JSON.parse(out).snapshots ?? []).map((s: { name: string }) => s.name);
}

/** A VM added for a test: its id and each storage item's file. */
export interface VmFacts {
  id: string;
  files: Record<string, string>;
}

/**
 * Adds VM `name` (the test guest) with `storage` (a YAML list) and optional extra `arguments`
 * items (YAML, e.g. `cdrom: /x.iso`); returns its id and disk paths.
 */
export async function addVm(
  env: QvmEnv,
  name: string,
  config: string | { storage: string; arguments?: string[] },
): Promise<VmFacts> {
  const { storage, arguments: more = [] } = typeof config === "string"
    ? { storage: config }
    : config;
  const extra = [...more.map((a) => `  - ${a}`), `storage: ${storage}`].join("\n");
  await env.ok(["add", await guestConfig(env, { name, extra })]);
  const info = JSON.parse(await env.ok(["info", name, "--json"]));
  const files: Record<string, string> = {};
  for (const s of info.storage) files[s.name] = s.file;
  return { id: info.id, files };
}

/** Creates a disk image where qvm expects it, as a first start would. */
export async function createImage(file: string, format = "qcow2"): Promise<void> {
  await Deno.mkdir(dirname(file), { recursive: true });
  const { code, out } = await tool("qemu-img", ["create", "-q", "-f", format, file, "32M"]);
  assert.equal(code, 0, out);
}

/** Runs qvm and expects exit `code` with a one-line error matching `message`. */
export async function fails(env: QvmEnv, args: string[], code: number, message: RegExp) {
  const res = await env.run(args);
  assert.equal(res.code, code, `qvm ${args.join(" ")}: ${res.stderr}`);
  assert.match(res.stderr, message);
  assert.equal(res.stderr.trim().split("\n").length, 1, res.stderr);
}

const encoder = new TextEncoder();

/**
 * Types `command` on the guest's serial console and returns what came back once `until` matches
 * (resending every few seconds, in case the shell was not reading yet). The socket takes one
 * client at a time: this connects, does its work and closes.
 */
export async function serial(
  env: QvmEnv,
  id: string,
  options: { command: string; until: RegExp; ms?: number },
): Promise<string> {
  const conn = await Deno.connect({
    transport: "unix",
    path: join(env.runtimeDir, `${id}.serial`),
  });
  const deadline = Date.now() + (options.ms ?? 30_000);
  let text = "";
  let closed = false;
  const timer = setTimeout(() => {
    closed = true;
    conn.close();
  }, options.ms ?? 30_000);
  const resend = setInterval(() => {
    conn.write(encoder.encode(`${options.command}\n`)).catch(() => {});
  }, 5000);
  try {
    await conn.write(encoder.encode(`${options.command}\n`));
    const buf = new Uint8Array(4096);
    const decoder = new TextDecoder();
    while (!options.until.test(text)) {
      let n: number | null = null;
      try {
        n = await conn.read(buf);
      } catch { /* closed by the timer */ }
      if (n === null || Date.now() > deadline) {
        throw new Error(`no ${options.until} on the serial console; got ${JSON.stringify(text)}`);
      }
      text += decoder.decode(buf.subarray(0, n), { stream: true });
    }
    return text;
  } finally {
    clearTimeout(timer);
    clearInterval(resend);
    if (!closed) conn.close();
  }
}

/** Exit status of `cat /tmp/m` in the guest, and whether the marker was printed. */
export async function markerInGuest(
  env: QvmEnv,
  id: string,
): Promise<{ rc: number; seen: boolean }> {
  // The command echoes as typed: `QVM""MARK` and `RC=$?` only match in the output.
  const text = await serial(env, id, { command: `cat /tmp/m; echo "RC=$?"`, until: /RC=\d+/ });
  return { rc: Number(text.match(/RC=(\d+)/)![1]), seen: /^QVMMARK\r?$/m.test(text) };
}

/** Runs one QMP command on VM `id` (its command socket) and returns the result. */
export async function qmp<T>(
  env: QvmEnv,
  id: string,
  command: string,
  args?: Record<string, unknown>,
): Promise<T> {
  const { QmpClient } = await import("../../src/qemu/qmp.ts");
  const client = await QmpClient.connect(join(env.runtimeDir, `${id}.qmp`));
  try {
    return await client.execute<T>(command, args);
  } finally {
    client.close();
    await client.closed;
  }
}
