/**
 * A QMP (QEMU Machine Protocol) client over a unix socket: newline-delimited JSON, commands matched
 * to replies by `id`, asynchronous events buffered in order.
 *
 * Behaviour observed with QEMU 7.2 (`-qmp unix:PATH,server=on,wait=off`):
 * - QEMU serves one QMP client at a time. While a client is connected, QEMU stops accepting, but
 *   the kernel still completes `connect()` for clients that fit in the listen backlog (QEMU listens
 *   with a backlog of 1, so two more connections succeed). Those clients get no greeting, and
 *   anything they send is left unread, until the current client disconnects: then QEMU accepts the
 *   next queued connection, sends it the greeting and processes what it had already sent.
 * - Once the backlog is full, a further `connect()` fails at once with EAGAIN (Deno's
 *   `WouldBlock`), because Deno's sockets are non-blocking.
 * - Before QEMU has created the socket, `connect()` fails with ENOENT; after QEMU has exited, the
 *   stale socket file refuses with ECONNREFUSED.
 * - QEMU ends lines with "\r\n". After `quit` it normally sends the `return` and a SHUTDOWN event,
 *   then closes the socket, but it may close first.
 *
 * So {@linkcode QmpClient.connect} retries ENOENT, ECONNREFUSED and EAGAIN, and once connected it
 * waits for the greeting for whatever remains of its timeout instead of failing.
 */

import { NotFoundError, PermissionError, QvmError, TimeoutError, UsageError } from "../errors.ts";
import { sleep } from "../timers.ts";

/** An asynchronous QMP event, e.g. `{"event": "STOP", "timestamp": {...}}`. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** The greeting QEMU sends when a client is accepted. */
export interface QmpGreeting {
  QMP: {
    version: { qemu: { major: number; minor: number; micro: number }; package?: string };
    capabilities: string[];
  };
}

/** Options for {@linkcode QmpClient.connect}. */
export interface QmpConnectOptions {
  /** Give up after this long, covering connect, greeting and `qmp_capabilities`. Default 5000. */
  timeoutMs?: number;
  /** Retry while the socket is missing, refusing or busy (QEMU still starting). Default true. */
  retry?: boolean;
}

/** Options for {@linkcode QmpClient.execute}. */
export interface QmpExecuteOptions {
  /** Reject with a TimeoutError if no reply arrives within this long. Default 10000. */
  timeoutMs?: number;
}

/** Options for {@linkcode QmpClient.waitForEvent}. */
export interface QmpWaitOptions {
  /** Reject with a TimeoutError if no matching event arrives within this long. Default 10000. */
  timeoutMs?: number;
  /** Extra condition on the event, e.g. on its `data`. */
  match?: (event: QmpEvent) => boolean;
  /**
   * Index into `events` from which buffered events count. Default 0: every event since connect.
   * Take `client.events.length` before sending a command to ignore older events of the same name.
   */
  since?: number;
}

/** QEMU answered a command with `{"error": {"class", "desc"}}`; the message is `desc`. */
export class QmpError extends QvmError {
  override name = "QmpError";
  /** QMP's error class, e.g. "CommandNotFound" or "GenericError". */
  qmpClass: string;
  /** The command that failed. */
  command?: string;
  constructor(qmpClass: string, desc: string, options?: { command?: string }) {
    super(desc);
    this.qmpClass = qmpClass;
    this.command = options?.command;
  }
}

/**
 * QEMU's limits on one incoming JSON message (its `json-streamer.c`): nesting of objects and arrays
 * together, number of tokens, and total bytes of tokens. QEMU answers a request over any of them
 * with a cascade of errors that carry no `id`, so {@linkcode QmpClient.execute} refuses such a
 * request before sending it.
 */
export const QMP_INPUT_LIMITS = { nesting: 1024, tokens: 2 * 1024 * 1024, bytes: 64 * 1024 * 1024 };

/** The shape of a JSON text as QEMU's reader counts it: deepest nesting and number of tokens. */
export function measureJson(text: string): { depth: number; tokens: number } {
  let depth = 0;
  let deepest = 0;
  let tokens = 0;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      tokens++;
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === BACKSLASH) i += 2;
        else if (d === QUOTE) break;
        else i++;
      }
      i++;
    } else if (c === 0x7b || c === 0x5b) { // { [
      tokens++;
      if (++depth > deepest) deepest = depth;
      i++;
    } else if (c === 0x7d || c === 0x5d) { // } ]
      tokens++;
      depth--;
      i++;
    } else if (c === 0x2c || c === 0x3a) { // , :
      tokens++;
      i++;
    } else if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) {
      i++;
    } else { // A number, true, false or null: one token up to the next delimiter.
      tokens++;
      while (i < n && !DELIMITERS.has(text.charCodeAt(i))) i++;
    }
  }
  return { depth: deepest, tokens };
}

/**
 * The request line for `message`, or a UsageError (exit 3) when QEMU could not read it: nested
 * deeper than QEMU allows, too many tokens, or too many bytes. Depth is reported for the
 * command's arguments, one level below the request itself.
 */
export function encodeRequest(
  message: { execute: string; arguments?: unknown; id: string },
): string {
  let text: string;
  try {
    text = JSON.stringify(message);
  } catch (error) {
    throw new UsageError(`cannot encode QMP ${message.execute} arguments: ${errorMessage(error)}`);
  }
  const { depth, tokens } = measureJson(text);
  const limits = QMP_INPUT_LIMITS;
  if (depth > limits.nesting) {
    throw new UsageError(
      `QMP ${message.execute} arguments are nested ${depth - 1} levels deep; QEMU reads at most ` +
        `${limits.nesting - 1}`,
    );
  }
  if (tokens > limits.tokens) {
    throw new UsageError(
      `QMP ${message.execute} request has ${tokens} JSON tokens; QEMU reads at most ` +
        `${limits.tokens}`,
    );
  }
  // Bytes are counted only when they might matter: UTF-8 has at most 3 bytes per UTF-16 unit.
  if (text.length * 3 >= limits.bytes) {
    const bytes = new TextEncoder().encode(text).length;
    if (bytes >= limits.bytes) {
      throw new UsageError(
        `QMP ${message.execute} request is ${bytes} bytes; QEMU reads less than ` +
          `${limits.bytes / 1024 / 1024} MiB per request`,
      );
    }
  }
  return text;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const DELIMITERS = new Set([0x7b, 0x5b, 0x7d, 0x5d, 0x2c, 0x3a, 0x20, 0x09, 0x0a, 0x0d, QUOTE]);
const CLOSED_MESSAGE = "QMP connection closed";
const RETRY_INTERVAL_MS = 50;
const READ_CHUNK = 256 * 1024;
const NEWLINE = 0x0a;

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Waiter {
  match: (event: QmpEvent) => boolean;
  resolve: (event: QmpEvent) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** A connected QMP session. Create with {@linkcode QmpClient.connect}. */
export class QmpClient {
  /** All events received, in order. */
  readonly events: QmpEvent[] = [];
  /** Resolves (never rejects) when the connection closes: QEMU exited or `close()` was called. */
  readonly closed: Promise<void>;

  #conn: Deno.UnixConn;
  #greeting?: QmpGreeting;
  #greetingWaiter?: { resolve: () => void; reject: (error: Error) => void };
  #pending = new Map<string, Pending>();
  /**
   * Ids of the commands sent and not yet answered, in the order sent, including those whose caller
   * gave up waiting. QEMU answers in that order, so an error without an id (QEMU could not read
   * the request, so it never saw the id) answers the first of them.
   */
  #inFlight: string[] = [];
  #waiters = new Set<Waiter>();
  #nextId = 0;
  #writeChain: Promise<void> = Promise.resolve();
  #encoder = new TextEncoder();
  #isClosed = false;
  #closeRequested = false;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.closed = this.#readLoop();
  }

  /**
   * Connect, read the greeting and send `qmp_capabilities`. Retries ENOENT, ECONNREFUSED and EAGAIN
   * while QEMU creates the socket, and waits for the greeting while another client holds the
   * monitor; throws TimeoutError once `timeoutMs` (default 5000) is spent.
   */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const retry = options.retry ?? true;
    const deadline = Date.now() + timeoutMs;
    let lastReason = "";
    while (true) {
      let conn: Deno.UnixConn | undefined;
      try {
        conn = await Deno.connect({ transport: "unix", path });
      } catch (error) {
        if (!retry || !isRetryableConnectError(error)) throw connectError(path, error);
        lastReason = error instanceof Deno.errors.WouldBlock
          ? "its queue is full; QEMU serves one QMP client at a time and others are waiting"
          : errorMessage(error);
      }
      if (conn !== undefined) {
        const client = new QmpClient(conn);
        try {
          await client.#waitForGreeting(Math.max(deadline - Date.now(), 1));
        } catch (error) {
          client.close();
          await client.closed;
          if (error instanceof TimeoutError) {
            throw new TimeoutError(
              `QMP socket ${path} accepted the connection but sent no greeting within ` +
                `${timeoutMs} ms (QEMU serves one QMP client at a time; is another connected?)`,
            );
          }
          // Closed before the greeting (QEMU exiting, or it dropped a queued connection).
          if (!retry) throw error;
          lastReason = errorMessage(error);
        }
        if (client.#greeting !== undefined) {
          try {
            await client.execute("qmp_capabilities", undefined, {
              timeoutMs: Math.max(deadline - Date.now(), 1),
            });
            return client;
          } catch (error) {
            client.close();
            await client.closed;
            throw error;
          }
        }
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new TimeoutError(
          `no QMP server at ${path} after ${timeoutMs} ms (last error: ${lastReason})`,
        );
      }
      await sleep(Math.min(RETRY_INTERVAL_MS, remaining));
    }
  }

  /** The greeting QEMU sent: its version and QMP capabilities. */
  get greeting(): QmpGreeting {
    if (this.#greeting === undefined) throw new QvmError("QMP greeting not received yet");
    return this.#greeting;
  }

  /**
   * Send a command with a unique `id` and resolve with its `return` value. Rejects with QmpError on
   * an `error` reply, TimeoutError after `timeoutMs` (default 10000), QvmError if the connection
   * closes first, except `quit`, which resolves when QEMU closes the connection.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: QmpExecuteOptions = {},
  ): Promise<T> {
    if (this.#isClosed || this.#closeRequested) {
      return Promise.reject(new QvmError(`${CLOSED_MESSAGE} (cannot run ${command})`));
    }
    const timeoutMs = options.timeoutMs ?? 10_000;
    const id = `qvm-${++this.#nextId}`;
    let text: string;
    try {
      text = encodeRequest(
        args === undefined ? { execute: command, id } : { execute: command, arguments: args, id },
      );
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new TimeoutError(`QMP command ${command} got no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        command,
        resolve: resolve as (value: unknown) => void,
        reject,
        timer,
      });
      this.#inFlight.push(id);
      this.#write(text + "\n").catch((error) => {
        this.#answered(id, { through: false });
        // If the socket went away, the read loop settles the command (quit resolves).
        if (this.#isClosed || this.#closeRequested) return;
        this.#settle(id, (p) => p.reject(new QvmError(`QMP write failed: ${errorMessage(error)}`)));
      });
    });
  }

  /**
   * Resolve with the first event called `name` (and passing `match`) among those buffered from
   * index `since` (default 0, i.e. since connect) and those still to come. TimeoutError after
   * `timeoutMs` (default 10000); QvmError if the connection closes first.
   */
  waitForEvent(name: string, options: QmpWaitOptions = {}): Promise<QmpEvent> {
    const match = (event: QmpEvent) =>
      event.event === name && (options.match === undefined || options.match(event));
    try {
      const found = this.events.slice(options.since ?? 0).find(match);
      if (found !== undefined) return Promise.resolve(found);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#isClosed) {
      return Promise.reject(new QvmError(`${CLOSED_MESSAGE} before event ${name}`));
    }
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise<QmpEvent>((resolve, reject) => {
      const waiter: Waiter = {
        match,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(new TimeoutError(`no QMP event ${name} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Close the socket; pending commands reject with "QMP connection closed". Idempotent. */
  close(): void {
    if (this.#closeRequested || this.#isClosed) return;
    this.#closeRequested = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  #waitForGreeting(timeoutMs: number): Promise<void> {
    if (this.#greeting !== undefined) return Promise.resolve();
    if (this.#isClosed) return Promise.reject(new QvmError(`${CLOSED_MESSAGE} before greeting`));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#greetingWaiter = undefined;
        reject(new TimeoutError(`no QMP greeting within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#greetingWaiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  /** Write all of `text`, one message at a time so concurrent commands never interleave. */
  #write(text: string): Promise<void> {
    const bytes = this.#encoder.encode(text);
    const done = this.#writeChain.then(async () => {
      let offset = 0;
      while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
    });
    this.#writeChain = done.catch(() => {});
    return done;
  }

  /**
   * Reads newline-delimited messages. Only the bytes of each new read are searched for the end of a
   * message, and a message is decoded once, when complete: a reply of many megabytes costs time in
   * proportion to its size. (UTF-8 never has a 0x0A byte inside a character, so splitting bytes at
   * newlines never splits a character.)
   */
  async #readLoop(): Promise<void> {
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(READ_CHUNK);
    let partial: Uint8Array[] = [];
    let partialLength = 0;
    let reason = CLOSED_MESSAGE;
    try {
      while (true) {
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        let start = 0;
        let newline: number;
        while ((newline = buffer.subarray(start, n).indexOf(NEWLINE)) >= 0) {
          const end = start + newline;
          let line: Uint8Array = buffer.subarray(start, end);
          if (partialLength > 0) {
            line = concat([...partial, line], partialLength + line.length);
            partial = [];
            partialLength = 0;
          }
          const text = decoder.decode(line).trim();
          if (text !== "") this.#dispatch(text);
          start = end + 1;
        }
        if (start < n) {
          partial.push(buffer.slice(start, n));
          partialLength += n - start;
        }
      }
    } catch (error) {
      if (!this.#closeRequested) reason = `${CLOSED_MESSAGE}: ${errorMessage(error)}`;
    }
    await this.#writeChain;
    this.#shutdown(reason);
  }

  #dispatch(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line);
    } catch {
      return; // Not JSON: nothing in QMP produces this; ignore rather than kill the session.
    }
    if (message === null || typeof message !== "object") return;
    if ("QMP" in message) {
      this.#greeting = message as unknown as QmpGreeting;
      this.#greetingWaiter?.resolve();
      this.#greetingWaiter = undefined;
    } else if (typeof message.event === "string") {
      const event = message as unknown as QmpEvent;
      this.events.push(event);
      for (const waiter of [...this.#waiters]) {
        try {
          if (!waiter.match(event)) continue;
          this.#waiters.delete(waiter);
          clearTimeout(waiter.timer);
          waiter.resolve(event);
        } catch (error) {
          this.#waiters.delete(waiter);
          clearTimeout(waiter.timer);
          waiter.reject(error instanceof Error ? error : new Error(String(error)));
        }
      }
    } else if (typeof message.id === "string") {
      this.#answered(message.id, { through: true });
      if ("error" in message) {
        this.#settle(message.id, (p) => p.reject(qmpError(message.error, p.command)));
      } else if ("return" in message) {
        this.#settle(message.id, (p) => p.resolve(message.return));
      }
    } else if (!("id" in message) && "error" in message) {
      // QEMU could not read a request (a parse error): it answers in order, so the first
      // command still unanswered is the one.
      const id = this.#inFlight.shift();
      if (id !== undefined) this.#settle(id, (p) => p.reject(qmpError(message.error, p.command)));
    }
  }

  /**
   * Forgets `id` as in flight. QEMU answers in order, so with `through` the commands sent before
   * it are answered too.
   */
  #answered(id: string, { through }: { through: boolean }): void {
    const at = this.#inFlight.indexOf(id);
    if (at < 0) return;
    if (through) this.#inFlight.splice(0, at + 1);
    else this.#inFlight.splice(at, 1);
  }

  #settle(id: string, how: (pending: Pending) => void): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return; // Timed out already.
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    how(pending);
  }

  #shutdown(reason: string): void {
    this.#isClosed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by close().
    }
    for (const id of [...this.#pending.keys()]) {
      this.#settle(id, (p) => {
        if (p.command === "quit") p.resolve(undefined);
        else p.reject(new QvmError(`${reason} (no reply to ${p.command})`));
      });
    }
    for (const waiter of this.#waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new QvmError(`${reason} (while waiting for an event)`));
    }
    this.#waiters.clear();
    this.#greetingWaiter?.reject(new QvmError(`${reason} before greeting`));
    this.#greetingWaiter = undefined;
  }
}

function isRetryableConnectError(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.WouldBlock;
}

function connectError(path: string, error: unknown): QvmError {
  const reason = errorMessage(error);
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return new PermissionError(`cannot connect to QMP socket ${path}: ${reason}`, { cause: error });
  }
  if (error instanceof Deno.errors.NotFound) {
    return new NotFoundError(`no QMP socket at ${path}`, { cause: error });
  }
  return new QvmError(`cannot connect to QMP socket ${path}: ${reason}`, { cause: error });
}

function qmpError(error: unknown, command: string): QmpError {
  const { class: qmpClass, desc } = (error ?? {}) as { class?: unknown; desc?: unknown };
  return new QmpError(
    typeof qmpClass === "string" ? qmpClass : "GenericError",
    typeof desc === "string" ? desc : "QMP error",
    { command },
  );
}

function concat(chunks: Uint8Array[], length: number): Uint8Array {
  const whole = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    whole.set(chunk, offset);
    offset += chunk.length;
  }
  return whole;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
