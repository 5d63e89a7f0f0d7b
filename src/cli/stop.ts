/** `qvm stop`: ACPI power-off, then QMP quit, then SIGTERM, then SIGKILL; says which step ended it. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { QvmError } from "../errors.ts";
import { Deadline } from "../vm/env.ts";
import { STEP_LABELS, stopVm } from "../vm/stop.ts";
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
    "Signals go only to a pid that is still this VM's QEMU.",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {
    timeout: {
      type: "string",
      value: "S",
      description: "seconds for the whole command (default 30)",
    },
    force: { type: "boolean", short: "f", description: "SIGKILL at once" },
    quiet: { type: "boolean", short: "q", description: "no progress line on a terminal" },
  },
  examples: ["qvm stop web1", "qvm stop web1 --timeout 10", "qvm stop web1 --force"],
};

/** Stops the VM and prints the step that ended it. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const timeoutS = parseTimeout(args.values.timeout, 30);
  const deadline = Deadline.in(timeoutS * 1000);
  const vm = ctx.store.require(args.positionals[0]);
  const { Progress, showStop } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const { step, unrecorded } = await stopVm(ctx, vm, {
    deadline,
    force: args.values.force === true,
    onStep: progress.enabled ? showStop(progress, vm) : undefined,
  }).finally(() => progress.done());
  if (unrecorded !== undefined) {
    throw new QvmError(
      `stopped ${vm.name} (${STEP_LABELS[step!]}), but the database could not be updated: ` +
        `${unrecorded}; the next qvm command will record it`,
    );
  }
  if (ctx.json) {
    ctx.outJson({ id: vm.id, name: vm.name, status: "stopped", step });
  } else if (step === null) {
    ctx.out(`${vm.name} was not running`);
  } else {
    ctx.out(`stopped ${vm.name} (${STEP_LABELS[step]})`);
  }
  return 0;
}
