/** `qvm stop`: ACPI power-off, then QMP quit, then SIGTERM, then SIGKILL; says which step ended it. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { STEP_LABELS, stopVm } from "../vm/stop.ts";
import { parseTimeout } from "./start.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "stop",
  summary: "stop a VM gracefully, escalating until it is gone",
  description:
    "Steps: ACPI system_powerdown (70% of the timeout), QMP quit (15%), SIGTERM (10%), SIGKILL.\n" +
    "Signals go only to a pid whose command line still carries this VM's -uuid.",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {
    timeout: {
      type: "string",
      value: "S",
      description: "seconds for the whole sequence (default 30)",
    },
    force: { type: "boolean", short: "f", description: "SIGKILL at once" },
  },
  examples: ["qvm stop web1", "qvm stop web1 --timeout 10", "qvm stop web1 --force"],
};

/** Stops the VM and prints the step that ended it. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const vm = ctx.store.require(args.positionals[0]);
  const timeoutS = parseTimeout(args.values.timeout, 30);
  const { step } = await stopVm(ctx, vm, { timeoutS, force: args.values.force === true });
  if (ctx.json) {
    ctx.outJson({ id: vm.id, name: vm.name, status: "stopped", step });
  } else if (step === null) {
    ctx.out(`${vm.name} was not running`);
  } else {
    ctx.out(`stopped ${vm.name} (${STEP_LABELS[step]})`);
  }
  return 0;
}
