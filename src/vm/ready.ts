/**
 * Waiting until a VM is ready, one way for every command that waits: the one parser of wait specs
 * (`start`, `restart` and `launch --wait-for`, `wait --for`), the one scanner of the serial console,
 * and the one loop that looks at the VM, the serial console and the guest until the target is
 * reached, cannot be reached any more, or the deadline passes.
 */
import type { VmRecord } from "../state/mod.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { cloudModule } from "../cloud/lazy.ts";
import { sleep } from "../timers.ts";

/** What a wait may wait for: a state, the guest answering, or a text on the serial console. */
export type WaitSpec<K extends string = WaitKind> =
  | { kind: Exclude<K, "serial"> }
  | ("serial" extends K ? { kind: "serial"; text: string } : never);

/** Every kind of wait; `serial` is written `serial:TEXT`. */
export type WaitKind = "process" | "qmp" | "running" | "stopped" | "ssh" | "agent" | "serial";

/** What `start`, `restart` and `launch --wait-for` accept. */
export const START_WAITS = ["process", "qmp", "serial", "ssh", "agent"] as const;
/** What `wait --for` accepts. */
export const STATE_WAITS = ["running", "stopped", "ssh", "agent", "serial"] as const;

/** What `start --wait-for` waits for. */
export type WaitFor = WaitSpec<typeof START_WAITS[number]>;
/** What `wait --for` waits for. */
export type WaitTarget = WaitSpec<typeof STATE_WAITS[number]>;

/** Parses a wait spec (`qmp`, `serial:TEXT`, ...) against the kinds a command accepts. */
export function parseWaitSpec<K extends WaitKind>(
  value: string,
  kinds: readonly K[],
): WaitSpec<K> | undefined {
  const known = kinds as readonly string[];
  if (value.startsWith("serial:")) {
    const text = value.slice("serial:".length);
    return known.includes("serial") && text !== ""
      ? { kind: "serial", text } as WaitSpec<K>
      : undefined;
  }
  return value !== "serial" && known.includes(value) ? { kind: value } as WaitSpec<K> : undefined;
}

/** Parses a `--wait-for` value: `process`, `qmp`, `serial:TEXT`, `ssh` or `agent`. */
export function parseWaitFor(value: string): WaitFor | undefined {
  return parseWaitSpec(value, START_WAITS);
}

/** Parses a `wait --for` value: `running`, `stopped`, `ssh`, `agent` or `serial:TEXT`. */
export function parseWaitTarget(value: string): WaitTarget | undefined {
  return parseWaitSpec(value, STATE_WAITS);
}

/** A wait spec as the user wrote it: `serial:TEXT`, else its kind. */
export function describeSpec(spec: { kind: string; text?: string }): string {
  return spec.kind === "serial" ? `serial:${spec.text}` : spec.kind;
}

/**
 * Reads a serial log from an offset on, a piece at a time, and says once a text has appeared in
 * it (also across two pieces). A log that shrank (replaced) is read again from its start.
 */
export class SerialScanner {
  /** The offset the scan began at. */
  readonly from: number;
  /** How far the log has been read. */
  offset: number;
  #carry = "";
  #decoder = new TextDecoder();

  constructor(readonly file: string, readonly text: string, offset: number) {
    this.from = offset;
    this.offset = offset;
  }

  /** Reads what the log gained since the last look; true once the text has appeared. */
  async found(): Promise<boolean> {
    let handle: Deno.FsFile;
    try {
      handle = await Deno.open(this.file, { read: true });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw err;
    }
    try {
      if ((await handle.stat()).size < this.offset) this.offset = 0; // truncated or replaced
      await handle.seek(this.offset, Deno.SeekMode.Start);
      const buf = new Uint8Array(65536);
      let n: number | null;
      while ((n = await handle.read(buf)) !== null && n > 0) {
        this.offset += n;
        this.#carry += this.#decoder.decode(buf.subarray(0, n), { stream: true });
        if (this.#carry.includes(this.text)) return true;
        this.#carry = this.#carry.slice(-this.text.length);
      }
      return false;
    } finally {
      handle.close();
    }
  }
}

/** One look at the VM, in the terms of the command that waits. */
export interface Look {
  /** The target is reached by the VM's state alone (`wait --for running`). */
  reached?: boolean;
  /** The VM is live: what its guest prints from now on counts. */
  live?: boolean;
  /** The guest runs, so it may answer over SSH or the agent: the VM to ask. */
  running?: VmRecord;
}

/** How the loop looks at the VM, and what the command that waits makes of what it sees. */
export interface ReadyWatch {
  /** Looks at the VM; throws when it can no longer reach the target by itself. */
  look(): Promise<Look>;
  /** The least time between two looks. */
  lookMs: number;
  /** Run between two guest probes: throws when the VM's QEMU went away or faulted. */
  guestCheck(vm: VmRecord): Promise<void>;
  /** What a failed guest wait means: throws, or returns to look at the VM again. */
  guestFailed?(err: unknown): void;
  /** The error when the deadline passes first. */
  timedOut(): Promise<Error>;
}

/** How often the serial console is read while a wait looks for a text on it. */
const SCAN_MS = 50;

/**
 * Waits until `spec` is reached: a look at the VM says so, the guest answers (ssh, agent), or the
 * text appears on the serial console (`scanner`, read only once the VM was seen live). Resolves
 * then; throws what the watch throws, or its timeout error.
 */
export async function waitReady(
  env: VmEnv,
  options: { spec: WaitSpec; deadline: Deadline; watch: ReadyWatch; scanner?: SerialScanner },
): Promise<void> {
  const { spec, deadline, watch, scanner } = options;
  let live = false;
  let lastLook = -Infinity;
  while (true) {
    if (Date.now() - lastLook >= watch.lookMs) {
      lastLook = Date.now();
      let look: Look;
      try {
        look = await watch.look();
      } catch (err) {
        // The guest may have printed the text just before it stopped, between two looks.
        if (scanner && live && await scanner.found()) return;
        throw err;
      }
      if (look.reached) return;
      if (look.live) live = true;
      const guest = look.running;
      if (guest && (spec.kind === "ssh" || spec.kind === "agent")) {
        const { waitForGuest } = await cloudModule();
        try {
          await waitForGuest(env, guest, {
            kind: spec.kind,
            deadline: deadline.at,
            check: () => watch.guestCheck(guest),
          });
          return;
        } catch (err) {
          if (!watch.guestFailed) throw err;
          watch.guestFailed(err);
          lastLook = -Infinity; // look again at once: where did the VM end up?
          continue;
        }
      }
    }
    if (scanner && live && await scanner.found()) return;
    if (deadline.expired) throw await watch.timedOut();
    const pause = scanner ? SCAN_MS : watch.lookMs;
    await sleep(Math.min(pause, Math.max(deadline.remainingMs(), 1)));
  }
}
