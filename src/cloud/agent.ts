/**
 * A small client for the QEMU guest agent (qemu-ga) on its virtio-serial channel
 * `org.qemu.guest_agent.0`, which QEMU serves on a unix socket in the runtime dir. Each call
 * opens the socket, resynchronises with `guest-sync-delimited` (qemu-ga answers with 0xFF then
 * the id, so a reply left over from an earlier client is skipped), sends one command and reads
 * its one-line reply.
 */
import { QvmError, TimeoutError } from "../errors.ts";
import { after, sleep } from "../timers.ts";

/** The agent answered with an error object. */
export class AgentError extends QvmError {
  override name = "AgentError";
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Writes all of `bytes` to `conn` (a write to a socket may take only part of them). */
async function writeAll(conn: Deno.UnixConn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}

/**
 * Reads from `conn` until the buffer holds `byte`; returns the buffer. Only new bytes are
 * searched and the buffer grows by doubling, so a reply of megabytes (a `guest-file-read` chunk)
 * costs linear time.
 */
async function readUntil(
  conn: Deno.UnixConn,
  buffer: Uint8Array,
  byte: number,
): Promise<Uint8Array> {
  if (buffer.includes(byte)) return buffer;
  let store = new Uint8Array(Math.max(buffer.length * 2, 65536));
  store.set(buffer);
  let length = buffer.length;
  for (;;) {
    if (store.length - length < 65536) {
      const grown = new Uint8Array(store.length * 2);
      grown.set(store.subarray(0, length));
      store = grown;
    }
    const n = await conn.read(store.subarray(length, length + 65536));
    if (n === null) throw new QvmError("the guest agent channel closed");
    const found = store.subarray(length, length + n).includes(byte);
    length += n;
    if (found) return store.subarray(0, length);
  }
}

/** Reads JSON lines until one passes `accept`; returns it and what follows it. */
async function readReply(
  conn: Deno.UnixConn,
  buffer: Uint8Array,
  accept: (reply: Record<string, unknown>) => boolean,
): Promise<{ reply: Record<string, unknown>; rest: Uint8Array }> {
  for (;;) {
    buffer = await readUntil(conn, buffer, 10);
    const end = buffer.indexOf(10);
    const line = decoder.decode(buffer.subarray(0, end)).replace(/^[\s\xff]+/, "");
    buffer = buffer.subarray(end + 1);
    if (line.trim() === "") continue;
    let reply: unknown;
    try {
      reply = JSON.parse(line);
    } catch {
      continue; // a fragment of an earlier client's reply
    }
    if (typeof reply === "object" && reply !== null && accept(reply as Record<string, unknown>)) {
      return { reply: reply as Record<string, unknown>, rest: buffer };
    }
  }
}

/** Options of {@link agentCall}. */
export interface AgentCallOptions {
  /** How long the whole call may take. */
  timeoutMs: number;
  /** The command sends no reply (`guest-shutdown`): return once it is written. */
  noReply?: boolean;
}

/**
 * Runs one guest agent command and returns its `return` value. Throws AgentError when the agent
 * answers with an error, TimeoutError when it does not answer in time (no agent in the guest, or
 * the guest still booting), QvmError when the socket is not there.
 */
export async function agentCall<T = unknown>(
  socket: string,
  command: { execute: string; arguments?: Record<string, unknown> },
  options: AgentCallOptions,
): Promise<T> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: socket });
  } catch (error) {
    throw new QvmError(`cannot reach the guest agent socket ${socket} (${(error as Error).name})`);
  }
  let timedOut = false;
  let finished = false;
  after(Math.max(options.timeoutMs, 1), () => {
    if (finished) return;
    timedOut = true;
    try {
      conn.close();
    } catch { /* closed already */ }
  });
  try {
    const id = Math.floor(Math.random() * 2 ** 31);
    // 0xFF first: not valid in JSON text, it resets the agent's parser, so a command an earlier
    // client left half-written (killed mid-write) is dropped instead of swallowing this one.
    const sync = encoder.encode(
      JSON.stringify({ execute: "guest-sync-delimited", arguments: { id } }) + "\n",
    );
    await writeAll(conn, Uint8Array.of(0xff, ...sync));
    // Everything before the 0xFF marker is stale; the reply with our id follows it.
    let buffer = await readUntil(conn, new Uint8Array(), 0xff);
    buffer = buffer.subarray(buffer.indexOf(0xff) + 1);
    ({ rest: buffer } = await readReply(conn, buffer, (r) => r.return === id));
    await writeAll(conn, encoder.encode(JSON.stringify(command) + "\n"));
    if (options.noReply) return undefined as T;
    const { reply } = await readReply(conn, buffer, (r) => "return" in r || "error" in r);
    if ("error" in reply) {
      const error = reply.error as { desc?: string; class?: string };
      throw new AgentError(
        `guest agent: ${command.execute}: ${error.desc ?? error.class ?? "failed"}`,
      );
    }
    return reply.return as T;
  } catch (error) {
    if (timedOut) {
      throw new TimeoutError(`the guest agent did not answer ${command.execute} in time`);
    }
    throw error;
  } finally {
    finished = true;
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

/** True when the agent answers `guest-ping` within `timeoutMs`. */
export async function agentPing(socket: string, timeoutMs: number): Promise<boolean> {
  try {
    await agentCall(socket, { execute: "guest-ping" }, { timeoutMs });
    return true;
  } catch {
    return false;
  }
}

/** One address of a guest interface, as `guest-network-get-interfaces` reports it. */
export interface GuestAddress {
  interface: string;
  family: "ipv4" | "ipv6";
  address: string;
  prefix: number;
}

interface RawInterface {
  name: string;
  "ip-addresses"?: { "ip-address-type": "ipv4" | "ipv6"; "ip-address": string; prefix: number }[];
}

/** The guest's addresses, loopback left out, in the agent's order. */
export function guestAddresses(interfaces: readonly RawInterface[]): GuestAddress[] {
  const out: GuestAddress[] = [];
  for (const iface of interfaces) {
    if (iface.name === "lo") continue;
    for (const ip of iface["ip-addresses"] ?? []) {
      out.push({
        interface: iface.name,
        family: ip["ip-address-type"],
        address: ip["ip-address"],
        prefix: ip.prefix,
      });
    }
  }
  return out;
}

/** Asks the agent for the guest's network interfaces and returns their addresses. */
export async function agentAddresses(socket: string, timeoutMs: number): Promise<GuestAddress[]> {
  const raw = await agentCall<RawInterface[]>(socket, {
    execute: "guest-network-get-interfaces",
  }, { timeoutMs });
  return guestAddresses(raw);
}

/** What a command run with `guest-exec` ended with. */
export interface ExecResult {
  /** Exit code, or 128 + signal number when a signal ended it. */
  code: number;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

function base64Bytes(text: unknown): Uint8Array {
  if (typeof text !== "string" || text === "") return new Uint8Array();
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/**
 * Runs `argv` in the guest with `guest-exec` (PATH is searched) and waits until it exits, polling
 * `guest-exec-status`. qemu-ga returns the output once the command has ended.
 */
export async function agentExec(
  socket: string,
  argv: readonly string[],
  options: { input?: Uint8Array; deadline?: number } = {},
): Promise<ExecResult> {
  const left = () => options.deadline === undefined ? 30_000 : options.deadline - Date.now();
  const args: Record<string, unknown> = {
    path: argv[0],
    arg: argv.slice(1),
    "capture-output": true,
  };
  if (options.input && options.input.length > 0) {
    args["input-data"] = btoa(String.fromCharCode(...options.input));
  }
  const { pid } = await agentCall<{ pid: number }>(socket, {
    execute: "guest-exec",
    arguments: args,
  }, {
    timeoutMs: Math.min(Math.max(left(), 1), 30_000),
  });
  let pause = 50;
  for (;;) {
    if (options.deadline !== undefined && left() <= 0) {
      throw new TimeoutError(`'${argv.join(" ")}' did not end in time in the guest`);
    }
    const status = await agentCall<Record<string, unknown>>(socket, {
      execute: "guest-exec-status",
      arguments: { pid },
    }, { timeoutMs: Math.min(Math.max(left(), 1), 30_000) });
    if (status.exited) {
      const code = typeof status.exitcode === "number"
        ? status.exitcode
        : 128 + (typeof status.signal === "number" ? status.signal : 0);
      return {
        code,
        stdout: base64Bytes(status["out-data"]),
        stderr: base64Bytes(status["err-data"]),
      };
    }
    await sleep(pause);
    pause = Math.min(pause * 2, 500);
  }
}

/** What {@link withFrozenGuest} did around the work. */
export interface FreezeResult<T> {
  value: T;
  /** Number of file systems the agent froze; 0 when it did not (then `reason` says why). */
  frozen: number;
  reason?: string;
}

/**
 * Runs `work` with the guest's file systems frozen (`guest-fsfreeze-freeze`, then `-thaw` in any
 * case), so a live snapshot holds consistent file systems. An agent that does not answer the
 * freeze within `timeoutMs`, or refuses it, never stops the work: it runs unfrozen, `frozen` is 0
 * and `reason` says why, so the caller can tell the user.
 */
export async function withFrozenGuest<T>(
  socket: string,
  work: () => Promise<T>,
  timeoutMs = 5000,
): Promise<FreezeResult<T>> {
  let frozen = 0;
  let reason: string | undefined;
  try {
    frozen = await agentCall<number>(socket, { execute: "guest-fsfreeze-freeze" }, { timeoutMs });
  } catch (error) {
    reason = (error as Error).message;
  }
  try {
    return { value: await work(), frozen, reason };
  } finally {
    if (frozen > 0) {
      await agentCall(socket, { execute: "guest-fsfreeze-thaw" }, { timeoutMs: 30_000 });
    }
  }
}

/**
 * Thaws a guest whose file systems are frozen (a guest restored from a snapshot taken frozen).
 * Never throws: `thawed` says whether it thawed, `reason` why it could not ask.
 */
export async function thawIfFrozen(
  socket: string,
  timeoutMs = 5000,
): Promise<{ thawed: boolean; reason?: string }> {
  try {
    if (await agentFreezeStatus(socket, timeoutMs) !== "frozen") return { thawed: false };
    await agentCall(socket, { execute: "guest-fsfreeze-thaw" }, { timeoutMs: 30_000 });
    return { thawed: true };
  } catch (error) {
    return { thawed: false, reason: (error as Error).message };
  }
}

/** `guest-fsfreeze-status`: `"thawed"` or `"frozen"`. */
export async function agentFreezeStatus(socket: string, timeoutMs: number): Promise<string> {
  return await agentCall<string>(socket, { execute: "guest-fsfreeze-status" }, { timeoutMs });
}

/** How long one file call may take: a 4 MiB chunk takes a few seconds under TCG. */
const FILE_CALL_MS = 120_000;

/**
 * Opens `path` in the guest with `guest-file-open` (`mode` as fopen's: `r`, `w`, `a`, ...) and
 * returns the agent's handle. A file the agent creates is made with mode 0666 whatever the guest's
 * umask (qemu-ga sets it so): create files only where nobody else can reach them.
 */
export async function agentFileOpen(socket: string, path: string, mode: string): Promise<number> {
  return await agentCall<number>(socket, {
    execute: "guest-file-open",
    arguments: { path, mode },
  }, { timeoutMs: FILE_CALL_MS });
}

/** Reads up to `count` bytes (qemu-ga allows 48 MB) from an open guest file. */
export async function agentFileRead(
  socket: string,
  handle: number,
  count: number,
): Promise<{ data: Uint8Array; eof: boolean }> {
  const reply = await agentCall<{ count: number; "buf-b64": string; eof: boolean }>(socket, {
    execute: "guest-file-read",
    arguments: { handle, count },
  }, { timeoutMs: FILE_CALL_MS });
  const data = reply["buf-b64"] ? Uint8Array.fromBase64(reply["buf-b64"]) : new Uint8Array();
  if (data.length !== reply.count) {
    throw new QvmError(`guest agent: guest-file-read sent ${data.length} of ${reply.count} bytes`);
  }
  return { data, eof: reply.eof };
}

/** Writes all of `data` to an open guest file (again for what a short write left). */
export async function agentFileWrite(
  socket: string,
  handle: number,
  data: Uint8Array,
): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const part = data.subarray(offset);
    const { count } = await agentCall<{ count: number }>(socket, {
      execute: "guest-file-write",
      arguments: { handle, "buf-b64": part.toBase64() },
    }, { timeoutMs: FILE_CALL_MS });
    if (!(count > 0)) throw new QvmError("guest agent: guest-file-write wrote nothing");
    offset += count;
  }
}

/** Closes a guest file handle (for a written file, after the data is flushed). */
export async function agentFileClose(socket: string, handle: number): Promise<void> {
  await agentCall(socket, {
    execute: "guest-file-close",
    arguments: { handle },
  }, { timeoutMs: FILE_CALL_MS });
}
