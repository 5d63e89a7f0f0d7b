/**
 * `qvm wait`: block until a VM reaches a state (running, stopped, answering over SSH or the guest
 * agent, or a text on its serial console). Exit 0 when reached, 2 on timeout, 1 as soon as the VM
 * is somewhere it cannot reach the state from by itself (e.g. stopped while waiting for ssh).
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { Deadline } from "../vm/env.ts";
import { describeSpec, parseWaitTarget } from "../vm/ready.ts";
import { waitForState } from "../vm/wait.ts";
import { parseTimeout, quietOption, timeoutOption } from "./_options.ts";
import { progressModule } from "./_format.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "wait",
  summary: "wait until a VM is running, stopped, answers (ssh, agent) or prints a text",
  description:
    "Exit 0 when the state is reached, 2 when the timeout passes first, 1 as soon as the VM is\n" +
    "where it cannot get there by itself: stopped or failed while waiting for ssh, agent or\n" +
    "serial:TEXT, or in a QEMU fault state (internal-error, guest-panicked, shutdown).\n" +
    "serial:TEXT looks for TEXT in what the guest printed since its QEMU started (the serial log\n" +
    "spans earlier runs, which do not count). Reads only: takes no lock.",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {
    for: {
      type: "string",
      value: "STATE",
      description: "running, stopped, ssh, agent, or serial:TEXT",
      complete: ["running", "stopped", "ssh", "agent", "serial:"],
    },
    timeout: timeoutOption(60),
    quiet: quietOption,
  },
  examples: [
    "qvm wait web1 --for running",
    "qvm wait web1 --for ssh --timeout 300",
    "qvm wait web1 --for 'serial:login:'",
    "qvm wait web1 --for stopped && qvm rm web1",
  ],
};

/** Waits; prints `NAME: STATE` (or JSON) once the state is reached. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const value = args.values.for as string | undefined;
  if (value === undefined) {
    throw new UsageError("wait: give --for running, stopped, ssh, agent or serial:TEXT");
  }
  const target = parseWaitTarget(value);
  if (!target) {
    throw new UsageError(
      `invalid --for '${value}': use running, stopped, ssh, agent or serial:TEXT`,
    );
  }
  const timeoutS = parseTimeout(args.values.timeout, 60);
  const deadline = Deadline.in(timeoutS * 1000);
  const vm = ctx.store.require(args.positionals[0]);
  const began = Date.now();
  const { Progress, formatSeconds } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  let status = "";
  progress.show(() =>
    `waiting for ${vm.name} to reach ${describeSpec(target)} · ` +
    progress.dim(`${formatSeconds(Date.now() - began)}${status ? ` · status: ${status}` : ""}`)
  );
  await waitForState(ctx, vm, { target, deadline, onStatus: (s) => status = s }).finally(() =>
    progress.done()
  );
  if (ctx.json) {
    ctx.outJson({
      id: vm.id,
      name: vm.name,
      reached: describeSpec(target),
      elapsed_ms: Date.now() - began,
    });
  } else {
    ctx.out(`${vm.name}: ${describeSpec(target)}`);
  }
  return 0;
}
