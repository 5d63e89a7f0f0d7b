/**
 * Truthful status: every read reconciles the database with reality. A VM is running only while its
 * pid is alive and carries our `-uuid`; QMP `query-status` (short timeout) tells paused or
 * unresponsive; a QEMU that is gone is recorded as stopped, with how it ended.
 */
import type { Context } from "../cli/context.ts";
import type { StateStore, VmBrief, VmRecord } from "../state/mod.ts";
import { isOurQemu, readPidFile } from "../qemu/process.ts";
import { isLocked } from "./lock.ts";
import { vmPaths } from "./paths.ts";

/** A status as qvm reports it: the stored ones plus the derived `paused` and `unresponsive`. */
export type ObservedStatus =
  | "created"
  | "starting"
  | "running"
  | "paused"
  | "unresponsive"
  | "stopping"
  | "stopped"
  | "failed";

/** What a read found out about one VM. */
export interface Observation {
  vm: VmRecord;
  status: ObservedStatus;
  /** QEMU's own run state from `query-status` (e.g. `running`, `paused`), when asked. */
  qemuStatus?: string;
}

const LIVE_STATUSES = new Set(["starting", "running", "stopping"]);

/** Why a QEMU that is gone ended, read from what it left behind. */
export function endReason(ctx: Context, vm: VmRecord): string {
  const paths = vmPaths(ctx.dirs, vm.id);
  let log = "";
  try {
    log = Deno.readTextFileSync(paths.qemuLog).slice(-4096);
  } catch { /* no log: fall through */ }
  const signal = log.match(/terminating on signal (\d+)/);
  if (signal) return `killed (signal ${signal[1]})`;
  // QEMU removes its pid file on an orderly exit (guest power-off, quit); a crash or SIGKILL leaves it.
  if (readPidFile(paths.pidFile) === vm.pid) return "crashed or killed (SIGKILL)";
  return "guest shutdown";
}

async function askQemu(socket: string, timeoutMs: number): Promise<string | undefined> {
  const { QmpClient } = await import("../qemu/qmp.ts");
  let client;
  try {
    client = await QmpClient.connect(socket, { timeoutMs, retry: false });
    const reply = await client.execute<{ status: string }>("query-status", undefined, {
      timeoutMs,
    });
    return reply.status;
  } catch {
    return undefined;
  } finally {
    client?.close();
  }
}

function settle(store: StateStore, vm: VmRecord, status: "stopped" | "failed", reason: string) {
  store.updateStatus(vm.id, status, { pid: null, stopReason: reason });
  return store.require(vm.id);
}

/**
 * Observes one VM and writes back what changed (a dead QEMU becomes `stopped` with its end
 * reason). `timeoutMs` bounds the QMP question, so a wedged VM cannot hold up the caller;
 * `locked` says the caller holds the VM's lock, so a held lock means no other command is busy.
 */
export async function observe(
  ctx: Context,
  vm: VmRecord,
  options: { timeoutMs?: number; qmp?: boolean; locked?: boolean } = {},
): Promise<Observation> {
  const paths = vmPaths(ctx.dirs, vm.id);
  const busy = () => !options.locked && isLocked(paths.lockFile);
  if (isOurQemu(vm.pid, vm.id)) {
    if ((vm.status === "stopping" || vm.status === "starting") && busy()) {
      return { vm, status: vm.status };
    }
    if (vm.status !== "running") {
      ctx.store.updateStatus(vm.id, "running");
      vm = ctx.store.require(vm.id);
    }
    if (options.qmp === false) return { vm, status: "running" };
    const qemuStatus = await askQemu(paths.monitorSocket, options.timeoutMs ?? 1000);
    if (qemuStatus === undefined) return { vm, status: "unresponsive" };
    return { vm, status: qemuStatus === "running" ? "running" : "paused", qemuStatus };
  }
  if (!LIVE_STATUSES.has(vm.status)) return { vm, status: vm.status as ObservedStatus };
  // Marked live but no QEMU of ours: a start/stop in progress holds the lock; otherwise it ended.
  if (busy()) return { vm, status: vm.status as ObservedStatus };
  if (vm.pid === null) {
    const ended = settle(ctx.store, vm, "failed", "start interrupted");
    return { vm: ended, status: "failed" };
  }
  const ended = settle(ctx.store, vm, "stopped", endReason(ctx, vm));
  return { vm: ended, status: "stopped" };
}

/** True if a VM's stored state claims a process, so only a look at the machine can settle it. */
export function needsCheck(vm: VmBrief): boolean {
  return vm.pid !== null || LIVE_STATUSES.has(vm.status);
}

/** A brief VM's status as a listing shows it. */
export interface BriefObservation {
  vm: VmBrief;
  status: ObservedStatus;
}

/**
 * Observes many VMs in parallel; each QMP question is bounded by `timeoutMs`. VMs that claim no
 * process are taken as stored (nothing to check), so listing 10,000 VMs costs what the live do.
 */
export function observeAll(
  ctx: Context,
  vms: readonly VmBrief[],
  options: { timeoutMs?: number } = {},
): Promise<BriefObservation[]> {
  return Promise.all(vms.map((vm) => {
    if (!needsCheck(vm)) return { vm, status: vm.status as ObservedStatus };
    return observe(ctx, ctx.store.require(vm.id), options);
  }));
}
