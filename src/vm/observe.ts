/**
 * Truthful status: every read reconciles the database with reality. A VM is running only while its
 * pid is alive and is this VM's QEMU (`isOurQemu`: our uid, qvm's runtime markers, a QEMU binary).
 * Its run state (paused, a fault state) comes from QEMU's `runstate_set` trace in its log, which
 * costs no QMP round trip (`ls`), or from QMP `query-status` with a short timeout, which also tells
 * unresponsive (`status`, and any QEMU started without the trace). A QEMU that is gone is recorded
 * as stopped, with how it ended. A QEMU of the VM that the database does not know about (a `start`
 * killed at the wrong moment) is found by its pid file or by a process scan, and adopted.
 */
import type { StoredStatus, VmBrief, VmRecord } from "../state/mod.ts";
import {
  findQemuUuids,
  isDeadState,
  isOurQemu,
  isStoppedState,
  logRunState,
  markersIn,
  ourQemuState,
  qemuIdentity,
  type QemuMarkers,
  readPidFile,
  readProcStat,
} from "../qemu/process.ts";
import type { VmEnv } from "./env.ts";
import { isLocked } from "./lock.ts";
import { exists, frozenIds, qemuLogPath, runtimeNames, vmPaths } from "../vm_files.ts";
import { lazyImport } from "../lazy.ts";
import { runState } from "../qemu/run_state.ts";

/**
 * Guests frozen for a live snapshot: the freeze, and the thaw of one an interrupted qvm left.
 * The loader lives here, with the check every observation makes, so that `status` and `ls` load
 * no module of their own for it.
 */
export const freezeModule = () => lazyImport<typeof import("./freeze.ts")>("src/vm/freeze.ts");

/**
 * A status as qvm reports it: the stored ones plus the derived `paused`, `unresponsive` and QEMU's
 * fault run states (`internal-error`, `guest-panicked`, `shutdown`: the guest powered off but
 * QEMU was told not to exit).
 */
export type ObservedStatus =
  | StoredStatus
  | "paused"
  | "unresponsive"
  | "internal-error"
  | "guest-panicked"
  | "shutdown"
  | "frozen";

/** QEMU run states in which the guest cannot go on by itself. */
export const FAULT_STATES: ReadonlySet<string> = new Set([
  "internal-error",
  "guest-panicked",
  "shutdown",
]);

/** Every status `ls --status` accepts, in the order qvm shows them. */
export const STATUSES: readonly ObservedStatus[] = [
  "created",
  "starting",
  "running",
  "paused",
  "frozen",
  "unresponsive",
  "internal-error",
  "guest-panicked",
  "shutdown",
  "stopping",
  "stopped",
  "failed",
];

/** What a read found out about one VM. */
export interface Observation {
  vm: VmRecord;
  status: ObservedStatus;
  /** QEMU's own run state from `query-status` (e.g. `running`, `paused`), when asked. */
  qemuStatus?: string;
  /** This observation thawed a guest that an interrupted live snapshot had left frozen. */
  thawed?: boolean;
}

const STORED_LIVE: ReadonlySet<string> = new Set(["starting", "running", "stopping"]);

/**
 * True if `status` (stored or observed) means a QEMU of the VM is, or may be, there: the one
 * definition every command uses to refuse, stop or settle.
 */
export function isLive(status: string): boolean {
  return status !== "created" && status !== "stopped" && status !== "failed";
}

/** The reason `observe` records for a start that was killed before its QEMU ran. */
export const START_INTERRUPTED = "start interrupted";

/** Shutdown causes QEMU traces (`qemu_system_shutdown_request reason=N`, QEMU's ShutdownCause). */
const SHUTDOWN_CAUSES: Readonly<Record<string, string>> = {
  "1": "QEMU error",
  "2": "QMP quit",
  "3": "QMP system_reset",
  "4": "killed by a signal",
  "5": "closed from QEMU's window",
  "6": "guest shutdown",
  "7": "guest reset",
  "8": "guest panic",
  "9": "reset by a device",
  "10": "snapshot load",
};

/** Why a QEMU that is gone ended, read from what it left behind. */
export function endReason(env: VmEnv, vm: VmRecord): string {
  const paths = vmPaths(env.dirs, vm.id);
  let log = "";
  try {
    log = Deno.readTextFileSync(paths.qemuLog).slice(-8192);
  } catch { /* no log: fall through */ }
  const signal = log.match(/terminating on signal (\d+)/);
  if (signal) return `killed (signal ${signal[1]})`;
  const causes = [...log.matchAll(/qemu_system_shutdown_request reason=(\d+)/g)];
  const cause = causes.at(-1)?.[1];
  if (cause !== undefined && SHUTDOWN_CAUSES[cause]) {
    const what = SHUTDOWN_CAUSES[cause];
    return cause === "2" ? `QMP quit (not by qvm stop)` : what;
  }
  // QEMU removes its pid file on an orderly exit (guest power-off, quit); a crash or SIGKILL leaves it.
  if (readPidFile(paths.pidFile) === vm.pid) return "crashed or killed (SIGKILL)";
  return "guest shutdown";
}

let scanned: { at: number; binary?: string; found: { pid: number; uuid: string }[] } | undefined;

/**
 * The QEMUs carrying a `-uuid` (see `findQemuUuids`): a scan that began at `since` or later
 * (`performance.now()` time), else one at most 200 ms old. Under a VM's lock, `since` is when
 * the lock was taken: a QEMU of the VM that was there then is in any scan begun after, and while
 * the lock is held no other command starts one; so the VMs of a command on many VMs share one
 * scan wherever their locks were taken before it began, instead of one scan each.
 */
function qemuProcesses(
  since: number | undefined,
  binary?: string,
): { pid: number; uuid: string }[] {
  const now = performance.now();
  if (
    !scanned || scanned.binary !== binary ||
    (since === undefined ? now - scanned.at > 200 : scanned.at < since)
  ) {
    scanned = { at: now, binary, found: findQemuUuids(binary ? [binary] : []) };
  }
  return scanned.found;
}

/**
 * The pid of a live QEMU of VM `id` that its row may not know: its pid file first, then a scan of
 * the process table for `-uuid id`; either must be ours (`isOurQemu`). Undefined if there is none.
 */
export function findQemuOf(
  env: VmEnv,
  id: string,
  options: { fresh?: boolean; since?: number; binary?: string } = {},
): number | undefined {
  const { binary } = options;
  const markers = markersIn(env.dirs.runtimeDir, { id, config: { binary } });
  const fromFile = readPidFile(markers.pidFile);
  if (fromFile && isOurQemu(fromFile, markers)) return fromFile;
  const since = options.fresh ? performance.now() : options.since;
  for (const { pid, uuid } of qemuProcesses(since, binary)) {
    if (uuid === id && isOurQemu(pid, markers)) return pid;
  }
  return undefined;
}

/** The status qvm shows for QEMU run state `qemuStatus`. */
export function statusFromQemu(qemuStatus: string): ObservedStatus {
  if (qemuStatus === "running") return "running";
  if (FAULT_STATES.has(qemuStatus)) return qemuStatus as ObservedStatus;
  return "paused";
}

function settle(env: VmEnv, vm: VmRecord, status: "stopped" | "failed", reason: string) {
  env.store.updateStatus(vm.id, status, { pid: null, stopReason: reason });
  return env.store.require(vm.id);
}

/** Records `pid` as the VM's running QEMU, with its start time when it is verified now. */
function adopt(env: VmEnv, vm: VmRecord, pid: number): VmRecord {
  env.store.updateStatus(vm.id, "running", {
    pid,
    pidStart: qemuIdentity(pid, markersIn(env.dirs.runtimeDir, vm))?.start ?? null,
    qmpSocketPath: vmPaths(env.dirs, vm.id).qmpSocket,
    stopReason: null,
  });
  return env.store.require(vm.id);
}

/**
 * True if a QEMU of VM `id` may be there although its row says otherwise: its pid file names a
 * live QEMU of the VM, or (with no pid file) its QMP socket is in place. No process scan, and a
 * stale pid file left by a crash costs one read.
 */
function leftByQemu(markers: QemuMarkers): boolean {
  const pid = readPidFile(markers.pidFile);
  if (pid !== undefined) return isOurQemu(pid, markers);
  try {
    Deno.lstatSync(markers.qmpSocket);
    return true;
  } catch {
    return false;
  }
}

/** Options of one observation. */
export interface ObserveOptions {
  /** Bound of the QMP question, so a wedged VM cannot hold up the caller (default 1 s). */
  timeoutMs?: number;
  /** Find out the run state (default true): from QMP, or with `fromLog` from QEMU's log. */
  qmp?: boolean;
  /**
   * Read the run state from QEMU's `runstate_set` trace in its log instead of asking QMP (QMP
   * only for a QEMU started without the trace); a QEMU stopped by a signal is `unresponsive`.
   */
  fromLog?: boolean;
  /** The caller holds the VM's lock, so a held lock means no other command is busy. */
  locked?: boolean;
  /** When the lock was taken (`performance.now()`): a process scan begun since will do. */
  lockedAt?: number;
  /** Look for an unknown QEMU of the VM even when its row says it is not running. */
  thorough?: boolean;
}

/**
 * Observes one VM and writes back what changed: a dead QEMU becomes `stopped` with its end
 * reason, a QEMU the row does not know is adopted.
 */
export async function observe(
  env: VmEnv,
  vm: VmRecord,
  options: ObserveOptions = {},
): Promise<Observation> {
  const paths = vmPaths(env.dirs, vm.id);
  const busy = () => !options.locked && isLocked(paths.lockFile);
  const markers = markersIn(env.dirs.runtimeDir, vm);
  let state = ourQemuState(vm.pid, markers);
  if (state === undefined) {
    const mayRun = STORED_LIVE.has(vm.status) || vm.stopReason === START_INTERRUPTED ||
      options.thorough === true || leftByQemu(markers);
    if (!mayRun) return { vm, status: vm.status };
    // Marked not running, yet a QEMU's files are there: adopt it only if no command is busy.
    if (!STORED_LIVE.has(vm.status) && !options.thorough && busy()) {
      return { vm, status: vm.status };
    }
    // Marked live but no QEMU at its pid: a start/stop in progress holds the lock.
    if (STORED_LIVE.has(vm.status) && busy()) return { vm, status: vm.status };
    const found = findQemuOf(env, vm.id, {
      since: options.locked ? options.lockedAt ?? performance.now() : undefined,
      binary: markers.binary,
    });
    if (found === undefined) {
      if (!STORED_LIVE.has(vm.status)) return { vm, status: vm.status };
      if (vm.pid === null) {
        const ended = settle(env, vm, "failed", START_INTERRUPTED);
        return { vm: ended, status: "failed" };
      }
      const ended = settle(env, vm, "stopped", endReason(env, vm));
      return { vm: ended, status: "stopped" };
    }
    vm = adopt(env, vm, found);
    state = ourQemuState(found, markers);
  } else if (vm.status === "stopping" || vm.status === "starting") {
    if (busy()) return { vm, status: vm.status };
  }
  if (vm.status !== "running") {
    env.store.updateStatus(vm.id, "running");
    vm = env.store.require(vm.id);
  }
  // A guest an interrupted live snapshot left frozen: one lstat, and a thaw only if it is there.
  const freeze = exists(paths.frozenFile)
    ? await (await freezeModule()).settleFreeze(env, vm, { locked: options.locked })
    : "none";
  const thawed = freeze === "thawed" ? { thawed: true } : {};
  const live = freeze === "frozen" ? "frozen" : "running";
  if (options.qmp === false) return { vm, status: live, ...thawed };
  if (options.fromLog) {
    if (isStoppedState(state)) return { vm, status: "unresponsive", ...thawed };
    const logged = logRunState(paths.qemuLog);
    if (logged !== undefined) {
      const status = statusFromQemu(logged);
      return { vm, status: status === "running" ? live : status, qemuStatus: logged, ...thawed };
    }
  }
  const qemuStatus = await runState(paths.monitorSocket, options.timeoutMs ?? 1000);
  if (qemuStatus === undefined) return { vm, status: "unresponsive", ...thawed };
  const status = statusFromQemu(qemuStatus);
  return { vm, status: status === "running" ? live : status, qemuStatus, ...thawed };
}

/** The warning of a command whose observation thawed a guest an interrupted snapshot left frozen. */
export function thawedWarning(name: string): string {
  return `thawed VM '${name}''s file systems, left frozen by an interrupted live snapshot`;
}

/** True if a VM's stored state claims a process, so only a look at the machine can settle it. */
export function needsCheck(vm: VmBrief): boolean {
  return vm.pid !== null || STORED_LIVE.has(vm.status);
}

/**
 * A VM's status when no look is needed, else undefined: it claims no process (`needsCheck`), its
 * last start was not interrupted, and no pid file or QMP socket of a QEMU of it is in the runtime
 * dir. `observe` returns the stored status for such a VM; the quick routes (`src/cli/quick.ts`)
 * answer from this and leave every other VM to `observe`.
 */
export function settledStatus(env: Pick<VmEnv, "dirs">, vm: VmBrief): StoredStatus | undefined {
  if (needsCheck(vm) || vm.stopReason === START_INTERRUPTED) return undefined;
  const markers = markersIn(env.dirs.runtimeDir, vm);
  return exists(markers.pidFile) || exists(markers.qmpSocket) ? undefined : vm.status;
}

/** A brief VM's status as a listing shows it. */
export interface BriefObservation {
  vm: VmBrief;
  status: ObservedStatus;
  qemuStatus?: string;
  /** When its QEMU started (clock ticks since boot), when the look read it. */
  started?: number;
}

/** Where a glance found a running VM's run state: the log's size then, and the state. */
export interface RunMark {
  /** The start time of the process it was read for (the row's `pidStart`). */
  start: number;
  /** The size of QEMU's log when it was read. */
  size: number;
  /** QEMU's run state, from the log's last `runstate_set` line. */
  state: string;
}

/**
 * A running VM seen from its row alone, the way `ls` sees most: its recorded pid still has the
 * start time qvm verified it at (one read of `/proc/<pid>/stat`, see `QemuMarkers.known`) and is
 * not a zombie, and its run state is in its log. Undefined when anything is otherwise (a pid
 * never verified, a process gone or replaced, no trace in the log, a freeze marker in `frozen`):
 * `observe` then looks fully. With `previous` (what a glance at the same process found), a log
 * whose size has not changed since is not read again: QEMU only appends to it, a line for each
 * change of run state. With `measure`, the result carries the mark for the next glance.
 */
export function glance(
  env: VmEnv,
  vm: VmBrief,
  options: { frozen: ReadonlySet<string>; previous?: RunMark; measure?: boolean },
): { seen: BriefObservation; mark?: RunMark } | undefined {
  if (vm.status !== "running" || !vm.pid || vm.pidStart === null) return undefined;
  if (options.frozen.has(vm.id)) return undefined; // settled (thawed, or shown frozen) in full
  const stat = readProcStat(vm.pid);
  if (stat?.start !== vm.pidStart || isDeadState(stat.state)) return undefined;
  if (isStoppedState(stat.state)) {
    return { seen: { vm, status: "unresponsive", started: stat.start } };
  }
  const log = qemuLogPath(env.dirs, vm.id);
  let size = -1;
  if (options.measure || options.previous) {
    try {
      size = Deno.statSync(log).size; // before reading: a line added meanwhile changes it
    } catch {
      return undefined;
    }
  }
  const { previous } = options;
  const state = previous?.start === vm.pidStart && previous.size === size
    ? previous.state
    : logRunState(log);
  if (state === undefined) return undefined;
  const seen = { vm, status: statusFromQemu(state), qemuStatus: state, started: stat.start };
  return { seen, mark: size === -1 ? undefined : { start: vm.pidStart, size, state } };
}

/**
 * Observes many VMs in parallel; each QMP question is bounded by `timeoutMs`. VMs that claim no
 * process are taken as stored (nothing to check), so listing 10,000 VMs costs what the live do.
 * With `fromLog`, a running VM whose recorded pid is still the process qvm verified costs one
 * /proc read and one log read (`glance`); any other is observed in full.
 */
export async function observeAll(
  env: VmEnv,
  vms: readonly VmBrief[],
  options: Pick<ObserveOptions, "timeoutMs" | "fromLog"> & {
    /** A listing of the runtime dir the caller made (`runtimeNames`), else one is made. */
    names?: ReadonlySet<string>;
  } = {},
): Promise<BriefObservation[]> {
  const seen: BriefObservation[] = vms.map((vm) => ({ vm, status: vm.status as ObservedStatus }));
  // Only the VMs that claim a process become promises (10,000 resolved promises cost ~3 ms).
  const checks: Promise<void>[] = [];
  let frozen: Set<string> | undefined;
  for (let i = 0; i < vms.length; i++) {
    if (!needsCheck(vms[i])) continue;
    if (options.fromLog) frozen ??= new Set(frozenIds(options.names ?? runtimeNames(env.dirs)));
    const quick = frozen ? glance(env, vms[i], { frozen }) : undefined;
    if (quick) {
      seen[i] = quick.seen;
      continue;
    }
    checks.push(
      observe(env, env.store.require(vms[i].id), options).then((o) => {
        seen[i] = o;
      }),
    );
  }
  await Promise.all(checks);
  return seen;
}

/**
 * True if VM `vm`'s recorded pid is its live QEMU (ours by uid, runtime markers and binary; see
 * `isOurQemu`): the quick check of commands that need a running VM. No scan, no QMP.
 */
export function qemuAlive(env: VmEnv, vm: VmRecord): boolean {
  return isOurQemu(vm.pid, markersIn(env.dirs.runtimeDir, vm));
}
