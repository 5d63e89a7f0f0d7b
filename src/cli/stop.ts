/** `qvm stop`: ACPI power-off, then QMP quit, then SIGTERM, then SIGKILL; says which step ended it. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { QvmError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import { selectVms, STOP_PARALLEL } from "../vm/bulk.ts";
import { Deadline } from "../vm/env.ts";
import { type OnStopStep, STEP_LABELS, type StopStep, stopVm } from "../vm/stop.ts";
import { reportEach } from "./_bulk.ts";
import { parseTimeout } from "./start.ts";
import { progressModule } from "./_format.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "stop",
  summary: "stop a VM gracefully, escalating until it is gone",
  description:
    "Steps: ACPI system_powerdown (70% of the timeout), QMP quit (15%), SIGTERM (10%), SIGKILL.\n" +
    "A paused guest skips ACPI; one that already powered off is quit at once. The timeout\n" +
    "covers the whole command, waiting for another qvm command's lock included.\n" +
    "Signals go only to a pid that is still this VM's QEMU.\n" +
    `Several VMs (or --all: every running VM) stop side by side, up to ${STOP_PARALLEL} at once;\n` +
    "the timeout then counts for each VM from when its stop begins. One line per VM; exit 0\n" +
    "when all stopped, else the failures' exit code if they all share one, else 1.",
  positionals: [{
    name: "VM",
    description: "ids or names",
    optional: true,
    variadic: true,
    complete: "vm",
  }],
  options: {
    all: { type: "boolean", description: "stop every running VM" },
    timeout: {
      type: "string",
      value: "S",
      description: "seconds for the whole command (default 30)",
    },
    force: { type: "boolean", short: "f", description: "SIGKILL at once" },
    quiet: { type: "boolean", short: "q", description: "no progress line on a terminal" },
  },
  examples: [
    "qvm stop web1",
    "qvm stop web1 --timeout 10",
    "qvm stop web1 --force",
    "qvm stop web1 web2 db1",
    "qvm stop --all",
  ],
};

/** The line `stop` prints for a VM it stopped (or found not running). */
function stoppedLine(name: string, step: StopStep | null): string {
  return step === null ? `${name} was not running` : `stopped ${name} (${STEP_LABELS[step]})`;
}

/** Stops `vm` within `deadline`; a stop the database could not record is an error. */
async function stopOne(
  ctx: Context,
  vm: VmRecord,
  options: { deadline: Deadline; force: boolean; onStep?: OnStopStep },
): Promise<StopStep | null> {
  const { step, unrecorded } = await stopVm(ctx, vm, options);
  if (unrecorded !== undefined) {
    throw new QvmError(
      `stopped ${vm.name} (${STEP_LABELS[step!]}), but the database could not be updated: ` +
        `${unrecorded}; the next qvm command will record it`,
    );
  }
  return step;
}

/** Stops the VM (or each VM, several at once) and prints the step that ended it. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const timeoutS = parseTimeout(args.values.timeout, 30);
  const force = args.values.force === true;
  const all = args.values.all === true;
  if (all || args.positionals.length !== 1) {
    const vms = await selectVms(ctx, {
      names: args.positionals,
      all,
      allOf: "live",
      command: "qvm stop",
    });
    return await reportEach(ctx, vms, {
      limit: STOP_PARALLEL,
      act: (vm) => stopOne(ctx, vm, { deadline: Deadline.in(timeoutS * 1000), force }),
      line: (step, vm) => stoppedLine(vm.name, step),
      json: (step, vm) => ({ id: vm.id, name: vm.name, status: "stopped", step }),
      none: "no running VMs",
    });
  }
  const deadline = Deadline.in(timeoutS * 1000);
  const vm = ctx.store.require(args.positionals[0]);
  const { Progress, showStop } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const step = await stopOne(ctx, vm, {
    deadline,
    force,
    onStep: progress.enabled ? showStop(progress, vm) : undefined,
  }).finally(() => progress.done());
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, status: "stopped", step });
  else ctx.out(stoppedLine(vm.name, step));
  return 0;
}
