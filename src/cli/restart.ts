/**
 * `qvm restart`: stop (the usual escalation) then start, under one lock, so no other qvm command
 * can start, stop or change the VM in between. A VM that was not running is just started.
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { selectVms, START_PARALLEL } from "../vm/bulk.ts";
import { Deadline } from "../vm/env.ts";
import { vmPaths } from "../vm_files.ts";
import { parseWaitFor } from "../vm/start.ts";
import { type Restarted, restartVm } from "../vm/restart.ts";
import { STEP_LABELS } from "../vm/stop.ts";
import { parseTimeout } from "./start.ts";
import { reportEach } from "./_bulk.ts";
import { progressModule } from "./_format.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "restart",
  summary: "stop a VM (escalating as stop does) and start it again, under one lock",
  description: "The stop escalates as 'qvm stop' does (ACPI, QMP quit, SIGTERM, SIGKILL) within\n" +
    "--stop-timeout; then QEMU is launched again and the start waits as 'qvm start' does.\n" +
    "The VM's lock is held from before the stop until the start is done.\n" +
    `Several VMs (or --all: every running VM) restart side by side, up to ${START_PARALLEL} at\n` +
    "once, each with its own timeouts. One line per VM; exit 0 when all restarted, else the\n" +
    "failures' exit code if they all share one, else 1.",
  positionals: [{
    name: "VM",
    description: "ids or names",
    optional: true,
    variadic: true,
    complete: "vm",
  }],
  options: {
    all: { type: "boolean", description: "restart every running VM" },
    "wait-for": {
      type: "string",
      value: "WHAT",
      description: "process, qmp (default), ssh, agent, or serial:TEXT",
      complete: ["process", "qmp", "ssh", "agent", "serial:"],
    },
    timeout: { type: "string", value: "S", description: "seconds for the start (default 60)" },
    "stop-timeout": {
      type: "string",
      value: "S",
      description: "seconds for the stop, lock wait included (default 30)",
    },
    force: { type: "boolean", short: "f", description: "SIGKILL at once instead of ACPI" },
    quiet: { type: "boolean", short: "q", description: "no progress line on a terminal" },
  },
  examples: [
    "qvm restart web1",
    "qvm restart web1 --wait-for 'serial:login:' --timeout 120",
    "qvm restart --all --wait-for ssh",
  ],
};

function restartedLine(name: string, { step, started }: Restarted): string {
  const how = step === null ? "was not running" : `stopped by ${STEP_LABELS[step]}`;
  return `restarted ${name} (${how}; pid ${started.vm.pid})`;
}

function restartedJson(vm: { id: string; name: string }, { step, started }: Restarted) {
  return { id: vm.id, name: vm.name, status: "running", stopped_by: step, pid: started.vm.pid };
}

/** Restarts the VM (or each VM, several at once); prints the step that stopped it and the new pid. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const waitValue = (args.values["wait-for"] as string | undefined) ?? "qmp";
  const waitFor = parseWaitFor(waitValue);
  if (!waitFor) {
    throw new UsageError(
      `invalid --wait-for '${waitValue}': use process, qmp, ssh, agent or serial:TEXT`,
    );
  }
  const startMs = parseTimeout(args.values.timeout, 60) * 1000;
  const stopMs = parseTimeout(args.values["stop-timeout"], 30, "--stop-timeout") * 1000;
  const force = args.values.force === true;
  const all = args.values.all === true;
  if (all || args.positionals.length !== 1) {
    const vms = await selectVms(ctx, {
      names: args.positionals,
      all,
      allOf: "live",
      command: "qvm restart",
    });
    return await reportEach(ctx, vms, {
      limit: START_PARALLEL,
      act: (vm) =>
        restartVm(ctx, vm, { waitFor, startMs, stopDeadline: Deadline.in(stopMs), force }),
      line: (restarted, vm) => restartedLine(vm.name, restarted),
      json: (restarted, vm) => restartedJson(vm, restarted),
      none: "no running VMs",
    });
  }
  const stopDeadline = Deadline.in(stopMs);
  const vm = ctx.store.require(args.positionals[0]);
  const { Progress, showStart, showStop } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const view = { name: vm.name, serialLog: vmPaths(ctx.dirs, vm.id).serialLog, verb: "restarting" };
  const restarted = await restartVm(ctx, vm, {
    waitFor,
    startMs,
    stopDeadline,
    force,
    onStop: progress.enabled ? showStop(progress, view) : undefined,
    onStart: progress.enabled ? showStart(progress, view) : undefined,
  }).finally(() => progress.done());
  if (ctx.json) ctx.outJson(restartedJson(vm, restarted));
  else ctx.out(restartedLine(vm.name, restarted));
  return 0;
}
