/**
 * `qvm restart`: stop (the usual escalation) then start, under one lock, so no other qvm command
 * can start, stop or change the VM in between. A VM that was not running is just started.
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { START_PARALLEL } from "../vm/bulk.ts";
import { vmPaths } from "../vm_files.ts";
import { type Restarted, restartVm } from "../vm/restart.ts";
import { STEP_LABELS } from "../vm/stop.ts";
import * as common from "./_options.ts";
import { bulkVms, reportEach } from "./_bulk.ts";
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
  positionals: [common.vmsPositional],
  options: {
    all: { type: "boolean", description: "restart every running VM" },
    "wait-for": common.waitForOption("qmp"),
    timeout: common.timeoutOption(60, "for the start"),
    "stop-timeout": common.timeoutOption(30, "for the stop, lock wait included"),
    force: common.forceKillOption,
    quiet: common.quietOption,
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
  const waitFor = common.parseWaitForOption(args.values["wait-for"], "qmp");
  const startMs = common.parseTimeout(args.values.timeout, 60) * 1000;
  const stopMs = common.parseTimeout(args.values["stop-timeout"], 30, "--stop-timeout") * 1000;
  const force = args.values.force === true;
  const vms = await bulkVms(ctx, args, { allOf: "live", command: "qvm restart" });
  if (vms) {
    return await reportEach(ctx, vms, {
      limit: START_PARALLEL,
      act: (vm) => restartVm(ctx, vm, { waitFor, startMs, stopMs, force }),
      line: (restarted, vm) => restartedLine(vm.name, restarted),
      json: (restarted, vm) => restartedJson(vm, restarted),
      none: "no running VMs",
    });
  }
  const vm = ctx.store.require(args.positionals[0]);
  const { Progress, showStart, showStop } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const view = { name: vm.name, serialLog: vmPaths(ctx.dirs, vm.id).serialLog, verb: "restarting" };
  const restarted = await restartVm(ctx, vm, {
    waitFor,
    startMs,
    stopMs,
    force,
    onStop: progress.enabled ? showStop(progress, view) : undefined,
    onStart: progress.enabled ? showStart(progress, view) : undefined,
  }).finally(() => progress.done());
  if (ctx.json) ctx.outJson(restartedJson(vm, restarted));
  else ctx.out(restartedLine(vm.name, restarted));
  return 0;
}
