/** `qvm start`: launch a VM's QEMU detached and wait until it is ready. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import { shellQuote } from "../shell.ts";
import { vmPaths } from "../vm_files.ts";
import { Deadline } from "../vm/env.ts";
import { previewArgv, type Started, type StartProgress, startVm } from "../vm/start.ts";
import { START_PARALLEL } from "../vm/bulk.ts";
import { bulkVms, reportEach } from "./_bulk.ts";
import { progressModule } from "./_format.ts";
import * as common from "./_options.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "start",
  summary: "start a VM (QEMU detached, QMP on a unix socket)",
  description:
    "Missing disks are created first (existing files are never overwritten). If QEMU fails or the\n" +
    "wait times out, no process is left behind and the VM is marked failed.\n" +
    `Several VMs (or --all: every VM not running) start side by side, up to ${START_PARALLEL} at\n` +
    "once, each waiting as --wait-for says within its own --timeout. One line per VM; exit 0\n" +
    "when all started, else the failures' exit code if they all share one, else 1.",
  positionals: [common.vmsPositional],
  options: {
    all: { type: "boolean", description: "start every VM that is not running" },
    "wait-for": common.waitForOption("qmp"),
    timeout: common.timeoutOption(60),
    "dry-run": { type: "boolean", description: "print the exact QEMU command line; start nothing" },
    quiet: common.quietOption,
  },
  examples: [
    "qvm start web1",
    "qvm start web1 --wait-for 'serial:login:' --timeout 120",
    "qvm start web1 web2 --wait-for ssh",
    "qvm start --all",
  ],
};

/** Starts the VM (or each VM, several at once); prints its pid (or, with --dry-run, its command line). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const waitFor = common.parseWaitForOption(args.values["wait-for"], "qmp");
  const timeoutS = common.parseTimeout(args.values.timeout, 60);
  if (args.values["dry-run"] && (args.values.all === true || args.positionals.length !== 1)) {
    throw new UsageError("qvm start: --dry-run takes one VM");
  }
  const { Progress, showStart, describeWait } = await progressModule();
  const waiting = new Map<string, number>(); // VM name → pid of the QEMU its start waits for
  const startOne = async (vm: VmRecord, show?: (event: StartProgress) => void) => {
    const started = await startVm(ctx, vm, {
      waitFor,
      deadline: Deadline.in(timeoutS * 1000),
      onProgress: (event) => {
        if (event.step === "wait") waiting.set(vm.name, event.pid);
        show?.(event);
      },
    }).finally(() => waiting.delete(vm.name));
    if (ctx.debug) ctx.note(shellQuote(started.argv));
    for (const disk of started.createdDisks) ctx.note(`created disk ${disk}`);
    return started;
  };
  const vms = await bulkVms(ctx, args, { allOf: "not-live", command: "qvm start" });
  const progress = new Progress(ctx, { quiet: vms !== undefined || args.values.quiet === true });
  // Ctrl-C while starts wait ends qvm, not their VMs: say which were left running, and how to
  // stop them.
  progress.onInterrupt(() => leftRunning(waiting, describeWait(waitFor)));
  try {
    if (vms) {
      return await reportEach(ctx, vms, {
        limit: START_PARALLEL,
        act: (vm) => startOne(vm),
        line: startedLine,
        json: startedJson,
        none: "no VMs to start: every VM is running",
      });
    }
    const vm = ctx.store.require(args.positionals[0]);
    if (args.values["dry-run"]) {
      const argv = await previewArgv(ctx, vm);
      if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, argv });
      else ctx.out(shellQuote(argv));
      return 0;
    }
    const serialLog = vmPaths(ctx.dirs, vm.id).serialLog;
    const show = progress.enabled ? showStart(progress, { name: vm.name, serialLog }) : undefined;
    const started = await startOne(vm, show).finally(() => progress.done());
    if (ctx.json) ctx.outJson(startedJson(started));
    else ctx.out(startedLine(started));
    return 0;
  } finally {
    progress.done();
  }
}

/**
 * The line for starts interrupted while they waited (`waiting`: VM name → QEMU pid), or undefined
 * when none had launched its QEMU yet.
 */
export function leftRunning(
  waiting: ReadonlyMap<string, number>,
  what: string,
): string | undefined {
  if (waiting.size === 0) return undefined;
  const names = [...waiting.keys()];
  const which = [...waiting].map(([name, pid]) => `'${name}' (pid ${pid})`).join(", ");
  return waiting.size === 1
    ? `qvm: interrupted while waiting for ${what}: VM ${which} was left running; stop it with ` +
      `'qvm stop ${names[0]}'`
    : `qvm: interrupted while waiting for ${what}: VMs ${which} were left running; stop them ` +
      `with 'qvm stop ${names.join(" ")}'`;
}

function startedLine(started: Started): string {
  return `started ${started.vm.name} (pid ${started.vm.pid})`;
}

function startedJson(started: Started): Record<string, unknown> {
  return { id: started.vm.id, name: started.vm.name, status: "running", pid: started.vm.pid };
}
