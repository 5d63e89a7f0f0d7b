/**
 * A running VM's QMP events, read on a QMP monitor of their own (`<id>.evt`), so following them
 * never holds the command socket (`.qmp`) or the status socket (`.mon`) that other qvm commands
 * use. A VM started by a qvm without that monitor still shows its run state changes, polled on the
 * status socket.
 */
import { NotRunningError, QvmError, TimeoutError } from "../errors.ts";
import { sleep } from "../timers.ts";
import type { QmpClient, QmpEvent } from "../qemu/qmp.ts";
import { qmpModule } from "../qemu/lazy.ts";
import { isOurQemu, markersIn } from "../qemu/process.ts";
import { runState } from "../qemu/run_state.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { isLive, observe } from "./observe.ts";
import { vmPaths } from "../vm_files.ts";

/** How long `follow` waits, once the VM has stopped, for it to be started again. */
export const RESTART_GRACE_MS = 3000;
const POLL_MS = 100;

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

/** Where events go as they come. */
export interface EventOptions {
  onEvent(line: EventLine): void;
}

/** Following one run of the VM: its QEMU's pid. */
interface RunOptions extends EventOptions {
  pid: number;
}

function isSocket(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSocket === true;
  } catch {
    return false;
  }
}

/** Streams events from the VM's event monitor until its QEMU closes the connection. */
async function stream(client: QmpClient, options: EventOptions): Promise<void> {
  let done = false;
  client.closed.then(() => done = true);
  while (true) {
    for (const event of client.events.splice(0)) options.onEvent(eventLine(event));
    if (done) break;
    await Promise.race([client.closed, sleep(POLL_MS)]);
  }
  for (const event of client.events.splice(0)) options.onEvent(eventLine(event));
}

/** For a QEMU without an event monitor: run state changes, polled on the status socket. */
async function pollStatus(env: VmEnv, vm: VmRecord, options: RunOptions): Promise<void> {
  const { pid } = options;
  const socket = vmPaths(env.dirs, vm.id).monitorSocket;
  let last: string | undefined;
  while (isOurQemu(pid, markersIn(env.dirs.runtimeDir, vm))) {
    const status = await runState(socket, 1000); // undefined: busy or going away
    if (status !== undefined && status !== last) {
      last = status;
      options.onEvent({ time: new Date().toISOString(), event: "STATUS", data: { status } });
    }
    await sleep(250);
  }
}

/** Follows one run of the VM (its QEMU `pid`) until that QEMU ends. */
async function followRun(env: VmEnv, vm: VmRecord, options: RunOptions): Promise<void> {
  const { pid } = options;
  const socket = vmPaths(env.dirs, vm.id).eventSocket;
  if (!isSocket(socket)) {
    env.warn?.(
      `VM '${vm.name}' runs without an event monitor (started by an older qvm): showing its ` +
        "run state changes only; restart it for every event",
    );
    return await pollStatus(env, vm, options);
  }
  const { QmpClient } = await qmpModule();
  let client: QmpClient;
  try {
    client = await QmpClient.connect(socket, { timeoutMs: 3000 });
  } catch (err) {
    if (!isOurQemu(pid, markersIn(env.dirs.runtimeDir, vm))) return; // it ended while we connected
    if (err instanceof TimeoutError) {
      throw new QvmError(
        `the event monitor of VM '${vm.name}' is taken (is another 'qvm events' following it?)`,
      );
    }
    throw err;
  }
  try {
    await stream(client, options);
  } finally {
    client.close();
    await client.closed;
  }
}

/** The VM's QEMU pid if it runs now, else undefined. */
async function runningPid(env: VmEnv, vm: VmRecord): Promise<number | undefined> {
  const row = env.store.get(vm.id);
  if (!row || row.id !== vm.id) return undefined;
  const seen = await observe(env, row, { qmp: false });
  return isLive(seen.status) && seen.vm.pid !== null &&
      isOurQemu(seen.vm.pid, markersIn(env.dirs.runtimeDir, vm))
    ? seen.vm.pid
    : undefined;
}

/**
 * Hands each event of VM `idOrName` to `options.onEvent` until its QEMU ends; with `follow`, waits
 * for it to start and goes on through restarts until it has stayed stopped for
 * {@linkcode RESTART_GRACE_MS} (or is removed). Without `follow`, a VM not running is an error.
 */
export async function followEvents(
  env: VmEnv,
  idOrName: string,
  options: EventOptions & { follow: boolean },
): Promise<void> {
  const vm = env.store.require(idOrName);
  const { follow } = options;
  let pid = await runningPid(env, vm);
  if (pid === undefined && !follow) {
    throw new NotRunningError(`VM '${vm.name}' is not running (use --follow to wait for it)`);
  }
  let seenRun = false;
  let stoppedAt = 0;
  while (true) {
    if (pid !== undefined) {
      seenRun = true;
      await followRun(env, vm, { ...options, pid });
      if (!follow) return;
      stoppedAt = Date.now();
    } else if (seenRun && Date.now() - stoppedAt > RESTART_GRACE_MS) {
      return;
    }
    await sleep(POLL_MS * 2);
    if (!env.store.get(vm.id)) return;
    pid = await runningPid(env, vm);
  }
}
