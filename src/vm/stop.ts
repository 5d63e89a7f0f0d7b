/**
 * Stopping a VM by escalation: ACPI power-off, then QMP `quit`, then SIGTERM, then SIGKILL, each
 * given its share of the timeout; `--force` goes straight to SIGKILL. Signals go only to a pid that
 * is still this VM's QEMU. The step that ended the VM is returned and recorded.
 */
import type { Context } from "../cli/context.ts";
import type { VmRecord } from "../state/mod.ts";
import { QvmError } from "../errors.ts";
import { isOurQemu, signalOurQemu } from "../qemu/process.ts";
import { acquireLock } from "./lock.ts";
import { observe } from "./observe.ts";
import { removeQuietly, runtimeFiles, vmPaths } from "./paths.ts";

/** One escalation step. */
export type StopStep = "acpi" | "quit" | "sigterm" | "sigkill";

/** A step and how long to wait, after taking it, for QEMU to be gone. */
export interface PlannedStep {
  step: StopStep;
  waitMs: number;
}

/** Human words for each step, as `stop` prints them. */
export const STEP_LABELS: Readonly<Record<StopStep, string>> = {
  acpi: "ACPI power-off",
  quit: "QMP quit",
  sigterm: "SIGTERM",
  sigkill: "SIGKILL",
};

/**
 * The escalation plan for a stop with `timeoutS` seconds: ACPI gets 70%, quit 15%, SIGTERM 10%,
 * SIGKILL the rest (at least a second), so the whole sequence ends within the timeout.
 */
export function planStop(timeoutS: number, options: { force?: boolean } = {}): PlannedStep[] {
  const total = Math.max(timeoutS, 0) * 1000;
  if (options.force) return [{ step: "sigkill", waitMs: Math.max(total, 5000) }];
  return [
    { step: "acpi", waitMs: Math.round(total * 0.7) },
    { step: "quit", waitMs: Math.round(total * 0.15) },
    { step: "sigterm", waitMs: Math.round(total * 0.1) },
    { step: "sigkill", waitMs: Math.max(Math.round(total * 0.05), 1000) },
  ];
}

/** How a stop ended. */
export interface Stopped {
  vm: VmRecord;
  /** The step that ended QEMU, or `null` if it was not running. */
  step: StopStep | null;
}

async function waitGone(pid: number, id: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isOurQemu(pid, id)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

async function qmpCommand(
  socket: string,
  { command, timeoutMs }: { command: string; timeoutMs: number },
): Promise<void> {
  const { QmpClient } = await import("../qemu/qmp.ts");
  const client = await QmpClient.connect(socket, { timeoutMs });
  try {
    await client.execute(command, undefined, { timeoutMs });
  } finally {
    client.close();
    await client.closed;
  }
}

/** Takes one step; false if it could not be taken (QMP unreachable, pid no longer ours). */
async function take(
  step: StopStep,
  vm: VmRecord,
  options: { budgetMs: number; socket: string },
): Promise<boolean> {
  const pid = vm.pid!;
  const { socket, budgetMs } = options;
  try {
    switch (step) {
      case "acpi":
        await qmpCommand(socket, {
          command: "system_powerdown",
          timeoutMs: Math.min(budgetMs, 5000),
        });
        return true;
      case "quit":
        await qmpCommand(socket, { command: "quit", timeoutMs: Math.min(budgetMs, 5000) });
        return true;
      case "sigterm":
        return signalOurQemu(pid, vm.id, "SIGTERM");
      case "sigkill":
        return signalOurQemu(pid, vm.id, "SIGKILL");
    }
  } catch {
    return false;
  }
}

/** Runs the plan against a live QEMU; returns the step after which it was gone. */
async function escalate(
  vm: VmRecord,
  options: { plan: PlannedStep[]; socket: string },
): Promise<StopStep | null> {
  const pid = vm.pid!;
  for (const { step, waitMs } of options.plan) {
    const started = Date.now();
    if (!isOurQemu(pid, vm.id)) return step;
    const taken = await take(step, vm, { budgetMs: waitMs, socket: options.socket });
    if (!taken && isOurQemu(pid, vm.id)) continue;
    if (await waitGone(pid, vm.id, Math.max(waitMs - (Date.now() - started), 0))) return step;
  }
  return null;
}

/**
 * Stops `vm`, escalating per `planStop`; `locked` means the caller already holds the VM's lock.
 * A VM that is not running is left as it is (step `null`).
 */
export async function stopVm(
  ctx: Context,
  vm: VmRecord,
  options: { timeoutS?: number; force?: boolean; locked?: boolean } = {},
): Promise<Stopped> {
  const paths = vmPaths(ctx.dirs, vm.id);
  const timeoutS = options.timeoutS ?? 30;
  const lock = options.locked
    ? undefined
    : await acquireLock(paths.lockFile, { timeoutMs: timeoutS * 1000, what: `VM '${vm.name}'` });
  try {
    const seen = await observe(ctx, ctx.store.require(vm.id), { qmp: false, locked: true });
    if (seen.status !== "running" && seen.status !== "stopping" && seen.status !== "starting") {
      return { vm: seen.vm, step: null };
    }
    ctx.store.updateStatus(vm.id, "stopping");
    const step = await escalate(seen.vm, {
      plan: planStop(timeoutS, options),
      socket: paths.qmpSocket,
    });
    if (step === null) {
      // Not even SIGKILL ended it (e.g. stuck in the kernel): say so, keep it marked running.
      ctx.store.updateStatus(vm.id, "running");
      throw new QvmError(`VM '${vm.name}' (pid ${seen.vm.pid}) did not exit, even after SIGKILL`);
    }
    ctx.store.updateStatus(vm.id, "stopped", {
      pid: null,
      stopReason: `stopped by qvm (${STEP_LABELS[step]})`,
    });
    runtimeFiles(paths).forEach(removeQuietly); // QEMU removes most itself
    return { vm: ctx.store.require(vm.id), step };
  } finally {
    lock?.release();
  }
}
