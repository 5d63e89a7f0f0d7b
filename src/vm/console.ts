/**
 * A VM's serial console for `qvm console`: attaching (one client at a time, the one holding it
 * named from the kernel's socket table), relaying input and output until detach, end of input or
 * the VM stopping, and making sure QEMU has passed all input to the guest before letting go.
 */
import { QvmError } from "../errors.ts";
import { sleep } from "../timers.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { qemuAlive } from "./observe.ts";
import { vmPaths } from "../vm_files.ts";
import { qmpOnce } from "./qmp_session.ts";

/** The byte that detaches: Ctrl-] (0x1d), as telnet does. */
export const DETACH_BYTE = 0x1d;

/** The label of the chardev qvm gives the serial console (see the QEMU command line). */
const SERIAL_CHARDEV = "qvm-serial";

/** An attached console: the VM, the connection to its serial socket, and where that is. */
export interface Console {
  vm: VmRecord;
  conn: Deno.UnixConn;
  serialSocket: string;
}

/**
 * Connects to the serial console of the running VM `idOrName`. Refused (naming the holder when
 * the kernel tells) while another client is attached: QEMU would queue a second one in silence.
 */
export async function openConsole(env: VmEnv, idOrName: string): Promise<Console> {
  const vm = env.store.require(idOrName);
  if (!qemuAlive(env, vm)) throw new QvmError(`VM '${vm.name}' is not running`);
  const paths = vmPaths(env.dirs, vm.id);
  if (await serialClientAttached(paths.monitorSocket)) {
    const holder = await serialHolder(paths.serialSocket, vm.pid!);
    throw new QvmError(
      `VM '${vm.name}' already has a console attached${holder ? ` (${holder})` : ""}; its ` +
        `serial port serves one client at a time: detach that one with Ctrl-], or end it`,
    );
  }
  try {
    const conn = await Deno.connect({ transport: "unix", path: paths.serialSocket });
    return { vm, conn, serialSocket: paths.serialSocket };
  } catch (err) {
    throw new QvmError(`cannot attach to ${vm.name}'s serial console: ${(err as Error).message}`);
  }
}

/** Where a relay reads and writes, and how long the guest may take to read what was sent. */
export interface RelayOptions {
  input: { read(buf: Uint8Array): Promise<number | null> };
  output: WritableStream<Uint8Array>;
  drainTimeoutMs: number;
}

/** How a relay ended: by Ctrl-] (`detached`), and whether the guest took all the input. */
export interface RelayEnd {
  detached: boolean;
  delivered: boolean;
}

/**
 * Relays `input` to the console and its output to `output` until Ctrl-], the end of input, or
 * the VM stopping; then waits for QEMU to take what was sent and, at the end of piped input, shows
 * the guest's answer until it has gone quiet. Closes the connection.
 */
export async function relayConsole(con: Console, options: RelayOptions): Promise<RelayEnd> {
  const output = { lastAt: Date.now() };
  const state = { guestGone: false };
  const fromGuest = con.conn.readable
    .pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          output.lastAt = Date.now();
          controller.enqueue(chunk);
        },
      }),
    )
    .pipeTo(options.output, { preventClose: true })
    .catch(() => {})
    .then(() => {
      state.guestGone = true;
    });
  const end: RelayEnd = { detached: false, delivered: true };
  try {
    end.detached = await sendInput(con.conn, { input: options.input, gone: fromGuest });
    if (!state.guestGone) {
      end.delivered = await deliver(con.conn, {
        serialSocket: con.serialSocket,
        qemuPid: con.vm.pid!,
        ended: () => state.guestGone,
        timeoutMs: options.drainTimeoutMs,
      });
      // At the end of piped input, show the guest's answer until it has gone quiet.
      if (end.delivered && !end.detached) await quiet(output, () => state.guestGone);
    }
  } finally {
    try {
      con.conn.close();
    } catch { /* closed by the guest side */ }
    await fromGuest;
  }
  return end;
}

/** Sends input until Ctrl-] (true), its end or the guest side closing (false). */
async function sendInput(
  conn: Deno.UnixConn,
  options: { input: RelayOptions["input"]; gone: Promise<void> },
): Promise<boolean> {
  const writer = conn.writable.getWriter();
  const buf = new Uint8Array(1024);
  const gone = options.gone.then(() => null);
  try {
    while (true) {
      const n = await Promise.race([options.input.read(buf), gone]);
      if (n === null) return false;
      const chunk = buf.subarray(0, n);
      const detach = chunk.indexOf(DETACH_BYTE);
      const data = detach === -1 ? chunk.slice() : chunk.slice(0, detach);
      try {
        if (data.length > 0) await writer.write(data);
      } catch {
        return false; // QEMU went away: the VM stopped.
      }
      if (detach !== -1) return true;
    }
  } finally {
    writer.releaseLock();
  }
}

/** Output quiet this long after the input ended means the guest has answered. */
const QUIET_MS = 1000;
/** The longest qvm keeps showing output after the input ended. */
const LINGER_MAX_MS = 10_000;

/** Resolves once no output came for {@linkcode QUIET_MS} (at most {@linkcode LINGER_MAX_MS}). */
async function quiet(output: { lastAt: number }, ended: () => boolean): Promise<void> {
  const until = Date.now() + LINGER_MAX_MS;
  output.lastAt = Math.max(output.lastAt, Date.now());
  while (!ended() && Date.now() < until && Date.now() - output.lastAt < QUIET_MS) {
    await sleep(50);
  }
}

/**
 * Waits until QEMU has read everything sent: QEMU reads the serial port's input only as fast as
 * the guest takes it, and closing earlier drops the rest. The socket table (`ss`) shows how many
 * bytes QEMU has not read yet; the connection stays open meanwhile, so the guest's answer still
 * comes back. Without `ss`, a half-close does it: QEMU reads what is left, sees the end and closes
 * its side. False if QEMU had not read everything within `timeoutMs`.
 */
async function deliver(
  conn: Deno.UnixConn,
  options: { serialSocket: string; qemuPid: number; ended: () => boolean; timeoutMs: number },
): Promise<boolean> {
  const deadline = Date.now() + options.timeoutMs;
  let unread = await unreadBytes(options.serialSocket, options.qemuPid);
  if (unread !== undefined) {
    while (unread !== undefined && unread > 0 && !options.ended()) {
      if (Date.now() >= deadline) return false;
      await sleep(50);
      unread = await unreadBytes(options.serialSocket, options.qemuPid);
    }
    if (unread !== undefined || options.ended()) return true;
  }
  try {
    await conn.closeWrite();
  } catch {
    return true; // The connection is gone already: nothing is left to deliver.
  }
  while (!options.ended()) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

/** One connected unix socket from the kernel's table (`ss -xpnH`). */
interface SocketRow {
  local: string;
  inode: string;
  peer: string;
  unread: number;
  pids: number[];
}

/** The connected unix sockets, or undefined when `ss` cannot tell. */
async function socketTable(): Promise<SocketRow[] | undefined> {
  let table: string;
  try {
    const out = await new Deno.Command("ss", { args: ["-xpnH"], stdin: "null", stderr: "null" })
      .output();
    if (!out.success) return undefined;
    table = new TextDecoder().decode(out.stdout);
  } catch {
    return undefined;
  }
  return table.split("\n").map((line) =>
    line.match(/^u_str\s+ESTAB\s+(\d+)\s+\d+\s+(\S+)\s+(\d+)\s+\S+\s+(\d+)\s*(.*)$/)
  ).filter((m) => m !== null).map((m) => ({
    unread: Number(m[1]),
    local: m[2],
    inode: m[3],
    peer: m[4],
    pids: [...m[5].matchAll(/pid=(\d+)/g)].map((p) => Number(p[1])),
  }));
}

/** Bytes sent to QEMU's serial socket that it has not read yet; undefined when unknown. */
async function unreadBytes(serialSocket: string, qemuPid: number): Promise<number | undefined> {
  const rows = await socketTable();
  return rows?.find((r) => r.local === serialSocket && r.pids.includes(qemuPid))?.unread;
}

/** True if QEMU reports a client on the VM's serial socket; false when unknown. */
async function serialClientAttached(monitorSocket: string): Promise<boolean> {
  try {
    const chardevs = await qmpOnce<{ label: string; filename: string }[]>(
      monitorSocket,
      "query-chardev",
      { timeoutMs: 5000 },
    );
    const serial = chardevs.find((c) => c.label === SERIAL_CHARDEV);
    return serial !== undefined && !serial.filename.startsWith("disconnected:");
  } catch {
    return false; // QMP unavailable: attach anyway, as before.
  }
}

/**
 * Who holds the VM's serial socket, e.g. "qvm console, pid 1234", from the kernel's socket table
 * (`ss`): QEMU's end of the connection names its peer, and the peer's owner is found by it.
 * Undefined when that cannot be told (no `ss`, another user's process).
 */
async function serialHolder(serialSocket: string, qemuPid: number): Promise<string | undefined> {
  const rows = await socketTable();
  if (rows === undefined) return undefined;
  const qemuEnd = rows.find((r) => r.local === serialSocket && r.pids.includes(qemuPid));
  const client = rows.find((r) => qemuEnd !== undefined && r.inode === qemuEnd.peer);
  const pid = client?.pids[0];
  if (pid === undefined) return undefined;
  let argv: string[];
  try {
    argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter((a) => a !== "");
  } catch {
    return `pid ${pid}`;
  }
  // qvm runs as `deno run ... main.ts console VM` or as the installed `qvm console VM`.
  const script = argv.findIndex((a) => /(^|\/)(main\.ts|qvm)$/.test(a));
  if (script >= 0 && argv.slice(script + 1).find((a) => !a.startsWith("-")) === "console") {
    return `qvm console, pid ${pid}`;
  }
  return `${argv[0]?.split("/").pop() ?? "a program"}, pid ${pid}`;
}
