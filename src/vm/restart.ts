/**
 * Restarting a VM: stop (the usual escalation) then start, under one lock, so no other qvm command
 * can start, stop or change the VM in between. A VM that was not running is just started.
 */
import { QvmError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import { probeDatabaseWrite } from "../state/mod.ts";
import { Deadline, type VmEnv } from "./env.ts";
import { withVm } from "./guard.ts";
import { vmPaths } from "../vm_files.ts";
import { launch, type Started, type StartProgress } from "./start.ts";
import type { WaitFor } from "./ready.ts";
import { type OnStopStep, STEP_LABELS, stopLocked, type StopStep } from "./stop.ts";
import { cloudModule } from "../cloud/lazy.ts";

/** What a restart waits for, and how long each half may take. */
export interface RestartOptions {
  waitFor: WaitFor;
  /** Milliseconds for the start, counted from when the stop is done. */
  startMs: number;
  /** Milliseconds for the stop, the wait for the VM's lock included. */
  stopMs: number;
  force?: boolean;
  onStop?: OnStopStep;
  onStart?: (progress: StartProgress) => void;
}

/** How a restart went: the step that stopped the VM (`null`: it was not running) and the start. */
export interface Restarted {
  step: StopStep | null;
  started: Started;
}

/**
 * Stops `vm` and starts it again under its lock. Nothing is stopped when the start could not be
 * recorded (the database cannot be written) or could never be waited for (`--wait-for ssh` with
 * no forward to port 22): both are refused first.
 */
export function restartVm(env: VmEnv, vm: VmRecord, options: RestartOptions): Promise<Restarted> {
  const { waitFor } = options;
  const stopDeadline = Deadline.in(options.stopMs);
  return withVm(env, vm, { deadline: stopDeadline }, async (seen) => {
    // A start cannot be recorded in a database that cannot be written: stop nothing then.
    const blocked = probeDatabaseWrite(env.store.path);
    if (blocked) throw blocked;
    // A wait the start could never satisfy is bad input: refused before anything is stopped.
    if (waitFor.kind === "ssh" || waitFor.kind === "agent") {
      (await cloudModule()).checkWaitable(seen.vm, waitFor.kind);
    }
    const stopped = await stopLocked(env, seen, {
      deadline: stopDeadline,
      force: options.force,
      onStep: options.onStop,
    });
    if (stopped.unrecorded !== undefined) {
      throw new QvmError(
        `stopped ${vm.name} (${STEP_LABELS[stopped.step!]}) but did not start it again: the ` +
          `database could not be updated: ${stopped.unrecorded}; the next qvm command will ` +
          "record the stop",
      );
    }
    const started = await launch(env, env.store.require(vm.id), {
      paths: vmPaths(env.dirs, vm.id),
      waitFor,
      deadline: Deadline.in(options.startMs),
      onProgress: options.onStart,
    });
    return { step: stopped.step, started };
  });
}
