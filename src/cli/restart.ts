/**
 * `qvm restart`: stop (the usual escalation) then start, under one lock, so no other qvm command
 * can start, stop or change the VM in between. A VM that was not running is just started.
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { QvmError, UsageError } from "../errors.ts";
import { probeDatabaseWrite } from "../state/mod.ts";
import { Deadline } from "../vm/env.ts";
import { withVm } from "../vm/guard.ts";
import { vmPaths } from "../vm/paths.ts";
import { launch, parseWaitFor } from "../vm/start.ts";
import { STEP_LABELS, stopLocked } from "../vm/stop.ts";
import { parseTimeout } from "./start.ts";
import { cloudModule } from "../lazy.ts";
import { progressModule } from "./_format.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "restart",
  summary: "stop a VM (escalating as stop does) and start it again, under one lock",
  description: "The stop escalates as 'qvm stop' does (ACPI, QMP quit, SIGTERM, SIGKILL) within\n" +
    "--stop-timeout; then QEMU is launched again and the start waits as 'qvm start' does.\n" +
    "The VM's lock is held from before the stop until the start is done.",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {
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
  examples: ["qvm restart web1", "qvm restart web1 --wait-for 'serial:login:' --timeout 120"],
};

/** Restarts the VM; prints the step that stopped it and the new pid. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const waitValue = (args.values["wait-for"] as string | undefined) ?? "qmp";
  const waitFor = parseWaitFor(waitValue);
  if (!waitFor) {
    throw new UsageError(
      `invalid --wait-for '${waitValue}': use process, qmp, ssh, agent or serial:TEXT`,
    );
  }
  const startS = parseTimeout(args.values.timeout, 60);
  const stopDeadline = Deadline.in(
    parseTimeout(args.values["stop-timeout"], 30, "--stop-timeout") * 1000,
  );
  const vm = ctx.store.require(args.positionals[0]);
  const paths = vmPaths(ctx.dirs, vm.id);
  const { Progress, showStart, showStop } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const view = { name: vm.name, serialLog: paths.serialLog, verb: "restarting" };
  const result = await withVm(ctx, vm, { deadline: stopDeadline }, async (seen) => {
    // A start cannot be recorded in a database that cannot be written: stop nothing then.
    const blocked = probeDatabaseWrite(ctx.store.path);
    if (blocked) throw blocked;
    // A wait the start could never satisfy is bad input: refused before anything is stopped.
    if (waitFor.kind === "ssh" || waitFor.kind === "agent") {
      (await cloudModule()).checkWaitable(seen.vm, waitFor.kind);
    }
    const stopped = await stopLocked(ctx, seen, {
      deadline: stopDeadline,
      force: args.values.force === true,
      onStep: progress.enabled ? showStop(progress, view) : undefined,
    });
    if (stopped.unrecorded !== undefined) {
      throw new QvmError(
        `stopped ${vm.name} (${STEP_LABELS[stopped.step!]}) but did not start it again: the ` +
          `database could not be updated: ${stopped.unrecorded}; the next qvm command will ` +
          "record the stop",
      );
    }
    const started = await launch(ctx, ctx.store.require(vm.id), {
      paths,
      waitFor,
      deadline: Deadline.in(startS * 1000),
      onProgress: progress.enabled ? showStart(progress, view) : undefined,
    });
    return { step: stopped.step, started };
  }).finally(() => progress.done());
  const { step, started } = result;
  if (ctx.json) {
    ctx.outJson({
      id: vm.id,
      name: vm.name,
      status: "running",
      stopped_by: step,
      pid: started.vm.pid,
    });
  } else {
    const how = step === null ? "was not running" : `stopped by ${STEP_LABELS[step]}`;
    ctx.out(`restarted ${vm.name} (${how}; pid ${started.vm.pid})`);
  }
  return 0;
}
