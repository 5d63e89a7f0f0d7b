/**
 * `qvm events`: a running VM's QMP events (run state changes, shutdown and its reason, device
 * removal, job progress) as lines or JSON lines, until its QEMU ends. Events are read on a QMP
 * monitor of their own (`<id>.evt`), so following them never holds the command socket (`.qmp`)
 * or the status socket (`.mon`) that other qvm commands use. A VM started by a qvm without that
 * monitor still shows its run state changes, polled on the status socket.
 */
import { type Context, writeOut } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { NotRunningError, QvmError, TimeoutError } from "../errors.ts";
import { sleep } from "../timers.ts";
import type { QmpClient, QmpEvent } from "../qemu/qmp.ts";
import { isOurQemu, markersIn } from "../qemu/process.ts";
import type { VmRecord } from "../state/mod.ts";
import { isLive, observe } from "../vm/observe.ts";
import { vmPaths } from "../vm_files.ts";
import { runState } from "../qemu/run_state.ts";
import { qmpModule } from "../qemu/lazy.ts";

/** How long `--follow` waits, once the VM has stopped, for it to be started again. */
export const RESTART_GRACE_MS = 3000;
const POLL_MS = 100;

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "events",
  summary: "print a running VM's QMP events until it stops",
  description:
    "Events come from a QMP monitor of their own (<id>.evt): other qvm commands keep theirs.\n" +
    "QEMU keeps no history, so events start when this command connects; one reader at a time.\n" +
    "Without --follow, a VM that is not running is an error (exit 3) and the command ends when\n" +
    "its QEMU ends. --follow waits for the VM to start, goes on through restarts, and ends once\n" +
    `the VM has stayed stopped for ${
      RESTART_GRACE_MS / 1000
    } s. With --json, one JSON object a line:\n` +
    '{"time": ISO-8601, "event": NAME, "data": {...}}.',
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {
    follow: {
      type: "boolean",
      short: "f",
      description: "wait for the VM to start, and go on through restarts",
    },
  },
  examples: ["qvm events web1", "qvm events web1 --follow --json"],
};

/** One event as `events --json` prints it. */
export interface EventLine {
  time: string;
  event: string;
  data: Record<string, unknown>;
}

/** A QMP event in the shape `events --json` prints (stable keys, ISO time). */
export function eventLine(event: QmpEvent): EventLine {
  const ts = (event as { timestamp?: { seconds: number; microseconds: number } }).timestamp;
  const ms = ts ? ts.seconds * 1000 + Math.floor(ts.microseconds / 1000) : Date.now();
  return {
    time: new Date(ms).toISOString(),
    event: event.event,
    data: (event.data as Record<string, unknown> | undefined) ?? {},
  };
}

/** An event as one human line: time, name, then `key=value` pairs of its data. */
export function formatEvent(line: EventLine): string {
  const flat: string[] = [];
  const walk = (prefix: string, value: unknown) => {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix}.${k}` : k, v);
    } else {
      flat.push(`${prefix}=${typeof value === "string" ? value : JSON.stringify(value)}`);
    }
  };
  walk("", line.data);
  return [line.time, line.event, ...flat].join(" ");
}

const encoder = new TextEncoder();

function print(ctx: Context, line: EventLine): void {
  writeOut(encoder.encode(`${ctx.json ? JSON.stringify(line) : formatEvent(line)}\n`));
}

function isSocket(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSocket === true;
  } catch {
    return false;
  }
}

/** Streams events from the VM's event monitor until its QEMU closes the connection. */
async function stream(ctx: Context, client: QmpClient): Promise<void> {
  let done = false;
  client.closed.then(() => done = true);
  while (true) {
    for (const event of client.events.splice(0)) print(ctx, eventLine(event));
    if (done) break;
    await Promise.race([client.closed, sleep(POLL_MS)]);
  }
  for (const event of client.events.splice(0)) print(ctx, eventLine(event));
}

/** For a QEMU without an event monitor: run state changes, polled on the status socket. */
async function pollStatus(ctx: Context, vm: VmRecord, pid: number): Promise<void> {
  const socket = vmPaths(ctx.dirs, vm.id).monitorSocket;
  let last: string | undefined;
  while (isOurQemu(pid, markersIn(ctx.dirs.runtimeDir, vm))) {
    const status = await runState(socket, 1000); // undefined: busy or going away
    if (status !== undefined && status !== last) {
      last = status;
      print(ctx, { time: new Date().toISOString(), event: "STATUS", data: { status } });
    }
    await sleep(250);
  }
}

/** Follows one run of the VM (its QEMU `pid`) until that QEMU ends. */
async function followRun(ctx: Context, vm: VmRecord, pid: number): Promise<void> {
  const socket = vmPaths(ctx.dirs, vm.id).eventSocket;
  if (!isSocket(socket)) {
    ctx.warn(
      `VM '${vm.name}' runs without an event monitor (started by an older qvm): showing its ` +
        "run state changes only; restart it for every event",
    );
    return await pollStatus(ctx, vm, pid);
  }
  const { QmpClient } = await qmpModule();
  let client: QmpClient;
  try {
    client = await QmpClient.connect(socket, { timeoutMs: 3000 });
  } catch (err) {
    if (!isOurQemu(pid, markersIn(ctx.dirs.runtimeDir, vm))) return; // it ended while we connected
    if (err instanceof TimeoutError) {
      throw new QvmError(
        `the event monitor of VM '${vm.name}' is taken (is another 'qvm events' following it?)`,
      );
    }
    throw err;
  }
  try {
    await stream(ctx, client);
  } finally {
    client.close();
    await client.closed;
  }
}

/** The VM's QEMU pid if it runs now, else undefined. */
async function runningPid(ctx: Context, vm: VmRecord): Promise<number | undefined> {
  const row = ctx.store.get(vm.id);
  if (!row || row.id !== vm.id) return undefined;
  const seen = await observe(ctx, row, { qmp: false });
  return isLive(seen.status) && seen.vm.pid !== null &&
      isOurQemu(seen.vm.pid, markersIn(ctx.dirs.runtimeDir, vm))
    ? seen.vm.pid
    : undefined;
}

/** Prints the VM's events until it stops (with --follow: until it stays stopped). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const vm = ctx.store.require(args.positionals[0]);
  const follow = args.values.follow === true;
  let pid = await runningPid(ctx, vm);
  if (pid === undefined && !follow) {
    throw new NotRunningError(`VM '${vm.name}' is not running (use --follow to wait for it)`);
  }
  let seenRun = false;
  let stoppedAt = 0;
  while (true) {
    if (pid !== undefined) {
      seenRun = true;
      await followRun(ctx, vm, pid);
      if (!follow) return 0;
      stoppedAt = Date.now();
    } else if (seenRun && Date.now() - stoppedAt > RESTART_GRACE_MS) {
      return 0;
    }
    await sleep(POLL_MS * 2);
    if (!ctx.store.get(vm.id)) return 0;
    pid = await runningPid(ctx, vm);
  }
}
