/** `qvm stop`: ACPI power-off, then QMP quit, then SIGTERM, then SIGKILL; says which step ended it. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { STOP_PARALLEL } from "../vm/bulk.ts";
import { Deadline } from "../vm/env.ts";
import { STEP_LABELS, type StopStep, stopVm } from "../vm/stop.ts";
import { bulkVms, reportEach } from "./_bulk.ts";
import * as common from "./_options.ts";
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
  positionals: [common.vmsPositional],
  options: {
    all: { type: "boolean", description: "stop every running VM" },
    timeout: common.timeoutOption(30, "for the whole command"),
    force: common.forceKillOption,
    quiet: common.quietOption,
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

/** Stops the VM (or each VM, several at once) and prints the step that ended it. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const timeoutS = common.parseTimeout(args.values.timeout, 30);
  const force = args.values.force === true;
  const vms = await bulkVms(ctx, args, { allOf: "live", command: "qvm stop" });
  if (vms) {
    return await reportEach(ctx, vms, {
      limit: STOP_PARALLEL,
      act: (vm) => stopVm(ctx, vm, { deadline: Deadline.in(timeoutS * 1000), force }),
      line: (step, vm) => stoppedLine(vm.name, step),
      json: (step, vm) => ({ id: vm.id, name: vm.name, status: "stopped", step }),
      none: "no running VMs",
    });
  }
  const deadline = Deadline.in(timeoutS * 1000);
  const vm = ctx.store.require(args.positionals[0]);
  const { Progress, showStop } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const step = await stopVm(ctx, vm, {
    deadline,
    force,
    onStep: progress.enabled ? showStop(progress, vm) : undefined,
  }).finally(() => progress.done());
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, status: "stopped", step });
  else ctx.out(stoppedLine(vm.name, step));
  return 0;
}
