/**
 * Stopping a VM by escalation: ACPI power-off, then QMP `quit`, then SIGTERM, then SIGKILL, each
 * given its share of the command's deadline; `--force` goes straight to SIGKILL. The run state is
 * watched as well as the pid: a paused guest cannot answer ACPI (straight to quit), and one that
 * has powered off while QEMU stays up (`no-shutdown`) is quit at once. QMP goes to the command
 * socket, or to the status socket when that one is gone. Signals go only to a pid that is still
 * this VM's QEMU. The step that ended the VM is returned and recorded.
 */
import type { VmRecord } from "../state/mod.ts";
import { QvmError } from "../errors.ts";
import {
  isOurQemu,
  logRunState,
  markersIn,
  type QemuMarkers,
  signalOurQemu,
} from "../qemu/process.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { agentSocketOf } from "./agent.ts";
import { withVm } from "./guard.ts";
import { findQemuOf, isLive, type Observation } from "./observe.ts";
import { removeQuietly, runtimeFiles, type VmPaths, vmPaths } from "../vm_files.ts";
import { qmpOnce } from "./qmp_session.ts";
import { runState } from "../qemu/run_state.ts";
import { agentModule } from "../cloud/lazy.ts";
import { sleep } from "../timers.ts";

/** One escalation step; `poweroff` means the guest had powered off and QEMU was told to quit. */
export type StopStep = "acpi" | "agent" | "poweroff" | "quit" | "sigterm" | "sigkill";

/** A step and how long to wait, after taking it, for QEMU to be gone. */
export interface PlannedStep {
  step: StopStep;
  waitMs: number;
}

/** Human words for each step, as `stop` prints them. */
export const STEP_LABELS: Readonly<Record<StopStep, string>> = {
  acpi: "ACPI power-off",
  agent: "guest agent shutdown",
  poweroff: "guest power-off",
  quit: "QMP quit",
  sigterm: "SIGTERM",
  sigkill: "SIGKILL",
};

/**
 * The escalation plan for a stop with `timeoutS` seconds: ACPI gets 70%, quit 15%, SIGTERM 10%,
 * SIGKILL the rest (at least a second), so the whole sequence ends within the timeout. With a
 * guest agent, ACPI gives 20% to the agent's `guest-shutdown`, tried when ACPI is ignored.
 */
export function planStop(
  timeoutS: number,
  options: { force?: boolean; agent?: boolean } = {},
): PlannedStep[] {
  const total = Math.max(timeoutS, 0) * 1000;
  if (options.force) return [{ step: "sigkill", waitMs: Math.max(total, 5000) }];
  const graceful: PlannedStep[] = options.agent
    ? [
      { step: "acpi", waitMs: Math.round(total * 0.5) },
      { step: "agent", waitMs: Math.round(total * 0.2) },
    ]
    : [{ step: "acpi", waitMs: Math.round(total * 0.7) }];
  return [
    ...graceful,
    { step: "quit", waitMs: Math.round(total * 0.15) },
    { step: "sigterm", waitMs: Math.round(total * 0.1) },
    { step: "sigkill", waitMs: Math.max(Math.round(total * 0.05), 1000) },
  ];
}

/** Called as each step is taken, with how long that step waits for QEMU to be gone. */
export type OnStopStep = (step: StopStep, waitMs: number) => void;

/** How a stop ended. */
export interface Stopped {
  vm: VmRecord;
  /** The step that ended QEMU, or `null` if it was not running. */
  step: StopStep | null;
  /** Set when QEMU was stopped but the database could not record it (e.g. a full disk). */
  unrecorded?: string;
}

/** QEMU's run state on the status socket (never held by a long command), within 50-1000 ms. */
/** QEMU's run state: from its log's trace (no QMP round trip), else over QMP. */
async function runStateOf(paths: VmPaths, timeoutMs: number): Promise<string | undefined> {
  return logRunState(paths.qemuLog) ??
    await runState(paths.monitorSocket, Math.max(Math.min(timeoutMs, 1000), 50));
}

function socketExists(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSocket === true;
  } catch {
    return false;
  }
}

/** Sends `command` on the command socket, or on the status socket if that one is gone or stuck. */
async function sendQmp(paths: VmPaths, command: string, budgetMs: number): Promise<void> {
  const timeoutMs = Math.max(Math.min(budgetMs, 5000), 100);
  if (socketExists(paths.qmpSocket)) {
    try {
      await qmpOnce(paths.qmpSocket, command, { timeoutMs: Math.min(timeoutMs, 2000) });
      return;
    } catch { /* busy or broken: the status socket takes the same commands */ }
  }
  await qmpOnce(paths.monitorSocket, command, { timeoutMs, retry: false });
}

/**
 * False when QEMU says the machine has no ACPI device (`-machine none`, `-no-acpi`), so no
 * power-off request can reach a guest; true otherwise, also when QEMU cannot tell.
 */
async function hasAcpi(paths: VmPaths, timeoutMs: number): Promise<boolean> {
  try {
    await qmpOnce(paths.monitorSocket, "query-acpi-ospm-status", {
      timeoutMs: Math.max(Math.min(timeoutMs, 1000), 50),
      retry: false,
    });
    return true;
  } catch (err) {
    return !(err instanceof QvmError && /missing ACPI device/i.test(err.message));
  }
}

/** Waits until QEMU `pid` is gone (true) or `ms` passes; with `watch`, also until a run state. */
async function waitGone(
  vm: QemuOf,
  options: { ms: number; paths?: VmPaths },
): Promise<boolean | "shutdown"> {
  const end = Date.now() + options.ms;
  let nextLook = Date.now() + 250;
  while (isOurQemu(vm.pid, vm)) {
    if (Date.now() >= end) return false;
    if (options.paths && Date.now() >= nextLook) {
      nextLook = Date.now() + 250;
      if (await runStateOf(options.paths, 500) === "shutdown") return "shutdown";
    }
    await sleep(25);
  }
  return true;
}

/** A VM's QEMU process: its pid and what marks it as the VM's (see `isOurQemu`). */
interface QemuOf extends QemuMarkers {
  pid: number;
}

/** Takes one step; false if it could not be taken (QMP unreachable, pid no longer ours). */
async function take(
  step: StopStep,
  vm: QemuOf,
  options: { budgetMs: number; paths: VmPaths; agentSocket?: string },
): Promise<boolean> {
  try {
    switch (step) {
      case "acpi":
        await sendQmp(options.paths, "system_powerdown", options.budgetMs);
        return true;
      case "agent": {
        if (!options.agentSocket) return false;
        const { agentCall } = await agentModule();
        await agentCall(options.agentSocket, { execute: "guest-shutdown" }, {
          timeoutMs: Math.max(Math.min(options.budgetMs, 3000), 100),
          noReply: true,
        });
        return true;
      }
      case "poweroff":
      case "quit":
        await sendQmp(options.paths, "quit", options.budgetMs);
        return true;
      case "sigterm":
        return signalOurQemu(vm.pid, vm, "SIGTERM");
      case "sigkill":
        return signalOurQemu(vm.pid, vm, "SIGKILL");
    }
  } catch {
    return false;
  }
}

/** Runs the plan against a live QEMU; returns the step after which it was gone. */
async function escalate(
  vm: QemuOf,
  options: { plan: PlannedStep[]; paths: VmPaths; agentSocket?: string; onStep?: OnStopStep },
): Promise<StopStep | null> {
  const { pid } = vm;
  const plan = [...options.plan];
  for (let i = 0; i < plan.length; i++) {
    let { step, waitMs } = plan[i];
    const started = Date.now();
    if (!isOurQemu(pid, vm)) return i === 0 ? step : plan[i - 1].step;
    if (step === "acpi") {
      const state = await runStateOf(options.paths, waitMs);
      // Steps the guest cannot answer give their share to the next one that may work.
      const skipTo = (next: number) => {
        const skipped = plan.slice(i, next).reduce((sum, p) => sum + p.waitMs, 0);
        plan.splice(i, next - i);
        plan[i] = { ...plan[i], waitMs: plan[i].waitMs + skipped };
        i--;
      };
      if (state === "shutdown") {
        step = "poweroff";
      } else if (state !== undefined && state !== "running") {
        // Paused (or stuck): the guest cannot answer ACPI nor its agent; on to quit.
        skipTo(plan.findIndex((p) => p.step === "quit"));
        continue;
      } else if (!await hasAcpi(options.paths, waitMs)) {
        // No ACPI device: a power-off request reaches nobody; the agent (if any) or quit.
        skipTo(i + 1);
        continue;
      }
    }
    options.onStep?.(step, waitMs);
    const taken = await take(step, vm, {
      budgetMs: waitMs,
      paths: options.paths,
      agentSocket: options.agentSocket,
    });
    if (!taken && isOurQemu(pid, vm)) continue;
    const left = Math.max(waitMs - (Date.now() - started), 0);
    const gone = await waitGone(vm, {
      ms: left,
      paths: step === "acpi" || step === "agent" ? options.paths : undefined,
    });
    if (gone === true) return step;
    if (gone === "shutdown") {
      // Powered off with QEMU told to stay: end it now, reporting the guest's own power-off.
      plan.splice(i + 1, 0, { step: "poweroff", waitMs: plan[i + 1]?.waitMs ?? 1000 });
    }
  }
  return null;
}

/** Runs a store write; returns its error message instead of throwing, so a stop goes on. */
function tryWrite(write: () => unknown): string | undefined {
  try {
    write();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Stops the VM seen under its lock (`withVm`), within `deadline`. A VM that is not running is left
 * as it is (step `null`). If the database cannot record the stop, QEMU is stopped all the same
 * and `unrecorded` says why.
 */
export async function stopLocked(
  env: VmEnv,
  seen: Observation,
  options: { deadline: Deadline; force?: boolean; onStep?: OnStopStep },
): Promise<Stopped> {
  const { vm } = seen;
  const paths = vmPaths(env.dirs, vm.id);
  const markers = markersIn(env.dirs.runtimeDir, vm);
  const pid = isOurQemu(vm.pid, markers)
    ? vm.pid!
    : findQemuOf(env, vm.id, { fresh: true, binary: markers.binary });
  if (!isLive(seen.status) || pid === undefined) return { vm, step: null };
  let unrecorded = tryWrite(() => env.store.updateStatus(vm.id, "stopping"));
  const agentSocket = agentSocketOf(env, vm);
  const step = await escalate({ ...markers, pid }, {
    plan: planStop(options.deadline.remainingMs() / 1000, {
      force: options.force,
      agent: agentSocket !== undefined,
    }),
    paths,
    agentSocket,
    onStep: options.onStep,
  });
  if (step === null) {
    // Not even SIGKILL ended it (e.g. stuck in the kernel): say so, keep it marked running.
    tryWrite(() => env.store.updateStatus(vm.id, "running"));
    throw new QvmError(`VM '${vm.name}' (pid ${pid}) did not exit, even after SIGKILL`);
  }
  unrecorded ??= tryWrite(() =>
    env.store.updateStatus(vm.id, "stopped", {
      pid: null,
      stopReason: `stopped by qvm (${STEP_LABELS[step]})`,
    })
  );
  runtimeFiles(paths).forEach(removeQuietly); // QEMU removes most itself
  if (unrecorded !== undefined) return { vm, step, unrecorded };
  return { vm: env.store.require(vm.id), step };
}

/**
 * Stops `vm` under its lock, escalating per `planStop` within `deadline`; returns the step that
 * ended it (`null`: it was not running). A stop the database could not record is an error.
 */
export async function stopVm(
  env: VmEnv,
  vm: VmRecord,
  options: { deadline: Deadline; force?: boolean; onStep?: OnStopStep },
): Promise<StopStep | null> {
  const { step, unrecorded } = await withVm(
    env,
    vm,
    { deadline: options.deadline },
    (seen) => stopLocked(env, seen, options),
  );
  if (unrecorded !== undefined) {
    throw new QvmError(
      `stopped ${vm.name} (${STEP_LABELS[step!]}), but the database could not be updated: ` +
        `${unrecorded}; the next qvm command will record it`,
    );
  }
  return step;
}
