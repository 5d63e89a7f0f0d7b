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

import { NotFoundError, PermissionError, QvmError, TimeoutError } from "../errors.ts";

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

const CLOSED_MESSAGE = "QMP connection closed";
const RETRY_INTERVAL_MS = 50;

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
    const message = args === undefined
      ? { execute: command, id }
      : { execute: command, arguments: args, id };
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
      this.#write(JSON.stringify(message) + "\n").catch((error) => {
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

  async #readLoop(): Promise<void> {
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(64 * 1024);
    let text = "";
    let reason = CLOSED_MESSAGE;
    try {
      while (true) {
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        text += decoder.decode(buffer.subarray(0, n), { stream: true });
        let newline: number;
        while ((newline = text.indexOf("\n")) >= 0) {
          const line = text.slice(0, newline).trim();
          text = text.slice(newline + 1);
          if (line !== "") this.#dispatch(line);
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
      // Replies without an id only answer unparsable requests, which this client never sends.
      if ("error" in message) {
        const error = message.error as { class?: string; desc?: string };
        this.#settle(message.id, (p) =>
          p.reject(
            new QmpError(error?.class ?? "GenericError", error?.desc ?? "QMP error", {
              command: p.command,
            }),
          ));
      } else if ("return" in message) {
        this.#settle(message.id, (p) => p.resolve(message.return));
      }
    }
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

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
