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
  /** The streams the agent cut (it keeps at most {@link AGENT_OUTPUT_LIMIT} bytes of each). */
  truncated: ("stdout" | "stderr")[];
}

/** The most output qemu-ga keeps of a command per stream; the rest is dropped. */
export const AGENT_OUTPUT_LIMIT = 16 * 1024 * 1024;

/** A command run with `guest-exec` that had not ended when the deadline came: it runs on. */
export class ExecTimeoutError extends TimeoutError {
  override name = "ExecTimeoutError";
  /** The command's process id in the guest. */
  readonly pid: number;
  constructor(message: string, pid: number) {
    super(message);
    this.pid = pid;
  }
}

function base64Bytes(text: unknown): Uint8Array {
  if (typeof text !== "string" || text === "") return new Uint8Array();
  return Uint8Array.fromBase64(text);
}

/** Input up to this size goes in `guest-exec`'s own `input-data`; more through a guest file. */
const INLINE_INPUT_BYTES = 64 * 1024;

/** Bytes per `guest-file-write`: each is one base64 string in one JSON message. */
const FILE_CHUNK_BYTES = 1024 * 1024;

/** Reads a byte stream in pieces of a chosen size (the last may be shorter), holding one piece. */
class Chunks {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #rest: Uint8Array = new Uint8Array();
  #ended = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /** Up to `size` bytes; an empty array once the stream has ended. */
  async next(size: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = this.#rest.length > 0 ? [this.#rest] : [];
    let have = this.#rest.length;
    while (have < size && !this.#ended) {
      const { value, done } = await this.#reader.read();
      if (done) this.#ended = true;
      else if (value.length > 0) {
        parts.push(value);
        have += value.length;
      }
    }
    const all = parts.length === 1 ? parts[0] : concat(parts, have);
    this.#rest = all.subarray(Math.min(size, all.length));
    return all.subarray(0, Math.min(size, all.length));
  }

  /** Stops reading (the stream is left unread). */
  cancel(): void {
    this.#reader.cancel().catch(() => {});
  }
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Writes the byte stream `input` to a new file `path` in the guest, one {@link FILE_CHUNK_BYTES}
 * piece at a time, so memory stays constant whatever the size. The agent makes the file mode 0666:
 * `path` must be in a folder nobody else can reach.
 */
async function writeGuestFile(
  socket: string,
  target: { path: string; input: ReadableStream<Uint8Array> },
): Promise<void> {
  const chunks = new Chunks(target.input);
  const handle = await agentFileOpen(socket, target.path, "w");
  try {
    for (;;) {
      const piece = await chunks.next(FILE_CHUNK_BYTES);
      if (piece.length === 0) break;
      await agentFileWrite(socket, handle, piece);
    }
  } catch (error) {
    chunks.cancel();
    throw error;
  } finally {
    await agentFileClose(socket, handle);
  }
}

/**
 * The shell line that runs `"$@"` with its stdin read from file `$0`, whose private folder is
 * removed first (the open descriptor keeps the data): how a big input reaches a command, as
 * `guest-exec` takes input only as one base64 string.
 */
const STDIN_FROM_FILE = 'exec <"$0" && rm -rf -- "${0%/*}" && exec "$@"';

/** Input small enough for `guest-exec` itself, or the stream of a bigger one. */
async function splitInput(
  input: Uint8Array | ReadableStream<Uint8Array> | undefined,
): Promise<{ inline?: Uint8Array; stream?: ReadableStream<Uint8Array> }> {
  if (input === undefined) return {};
  if (input instanceof Uint8Array) {
    if (input.length <= INLINE_INPUT_BYTES) return { inline: input };
    return { stream: ReadableStream.from([input]) };
  }
  const chunks = new Chunks(input);
  const head = await chunks.next(INLINE_INPUT_BYTES + 1);
  if (head.length <= INLINE_INPUT_BYTES) return { inline: head };
  return { stream: ReadableStream.from(prepend(head, chunks)) };
}

async function* prepend(head: Uint8Array, rest: Chunks): AsyncGenerator<Uint8Array> {
  yield head;
  for (;;) {
    const piece = await rest.next(FILE_CHUNK_BYTES);
    if (piece.length === 0) return;
    yield piece;
  }
}

/**
 * Runs `argv` in the guest with `guest-exec` (PATH is searched) and waits until it exits, polling
 * `guest-exec-status`; qemu-ga returns the output once the command has ended, and `truncated`
 * names a stream it cut. `input` (bytes or a stream) becomes the command's stdin: up to 64 KiB in
 * the `guest-exec` call itself, more through a temporary guest file written piece by piece. At
 * `deadline` an ExecTimeoutError carries the guest pid of the command, which runs on.
 */
export async function agentExec(
  socket: string,
  argv: readonly string[],
  options: { input?: Uint8Array | ReadableStream<Uint8Array>; deadline?: number } = {},
): Promise<ExecResult> {
  const left = () =>
    Math.min(
      Math.max(options.deadline === undefined ? 30_000 : options.deadline - Date.now(), 1),
      30_000,
    );
  const { inline, stream } = await splitInput(options.input);
  let command = [...argv];
  if (stream) {
    // A folder of root's own (mktemp -d: 0700), as the agent makes the file itself mode 0666.
    const made = await agentExec(socket, ["mktemp", "-d", "/tmp/qvm-stdin.XXXXXXXXXX"], {
      deadline: options.deadline,
    });
    const dir = new TextDecoder().decode(made.stdout).trim();
    if (made.code !== 0 || !dir.startsWith("/tmp/qvm-stdin.")) {
      throw new QvmError(
        `cannot make a folder in the guest for the command's input (mktemp -d: ${
          new TextDecoder().decode(made.stderr).trim() || `exit status ${made.code}`
        })`,
      );
    }
    const inputFile = `${dir}/stdin`;
    try {
      await writeGuestFile(socket, { path: inputFile, input: stream });
    } catch (error) {
      await agentCall(socket, {
        execute: "guest-exec",
        arguments: { path: "rm", arg: ["-rf", "--", dir] },
      }, { timeoutMs: 5000 }).catch(() => {});
      throw error;
    }
    command = ["sh", "-c", STDIN_FROM_FILE, inputFile, ...argv];
  }
  const args: Record<string, unknown> = {
    path: command[0],
    arg: command.slice(1),
    "capture-output": true,
  };
  if (inline && inline.length > 0) args["input-data"] = inline.toBase64();
  const { pid } = await agentCall<{ pid: number }>(socket, {
    execute: "guest-exec",
    arguments: args,
  }, { timeoutMs: left() });
  const late = () =>
    new ExecTimeoutError(
      `'${argv.join(" ")}' did not end in time: it still runs in the guest (pid ${pid})`,
      pid,
    );
  const pastDeadline = () => options.deadline !== undefined && Date.now() >= options.deadline;
  let pause = 50;
  for (;;) {
    if (pastDeadline()) throw late();
    let status: Record<string, unknown>;
    try {
      status = await agentCall<Record<string, unknown>>(socket, {
        execute: "guest-exec-status",
        arguments: { pid },
      }, { timeoutMs: left() });
    } catch (error) {
      if (error instanceof TimeoutError && pastDeadline()) throw late();
      throw error;
    }
    if (status.exited) {
      const code = typeof status.exitcode === "number"
        ? status.exitcode
        : 128 + (typeof status.signal === "number" ? status.signal : 0);
      const truncated: ExecResult["truncated"] = [];
      if (status["out-truncated"] === true) truncated.push("stdout");
      if (status["err-truncated"] === true) truncated.push("stderr");
      return {
        code,
        stdout: base64Bytes(status["out-data"]),
        stderr: base64Bytes(status["err-data"]),
        truncated,
      };
    }
    await sleep(pause);
    pause = Math.min(pause * 2, 500);
  }
}

/** `guest-fsfreeze-freeze`: freezes the guest's file systems; returns how many it froze. */
export async function agentFreeze(socket: string, timeoutMs: number): Promise<number> {
  return await agentCall<number>(socket, { execute: "guest-fsfreeze-freeze" }, { timeoutMs });
}

/** `guest-fsfreeze-thaw`: thaws the guest's file systems (none frozen is no error); how many. */
export async function agentThaw(socket: string, timeoutMs: number): Promise<number> {
  return await agentCall<number>(socket, { execute: "guest-fsfreeze-thaw" }, { timeoutMs });
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
