/** `qvm start`: launch a VM's QEMU detached and wait until it is ready. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import { launchArgv } from "../qemu/launch.ts";
import { shellQuote } from "../shell.ts";
import { vmPaths } from "../vm_files.ts";
import { Deadline, MAX_WAIT_S } from "../vm/env.ts";
import { parseWaitFor, type Started, type StartProgress, startVm } from "../vm/start.ts";
import { selectVms, START_PARALLEL } from "../vm/bulk.ts";
import { reportEach } from "./_bulk.ts";
import { cloudModule } from "../cloud/lazy.ts";
import { progressModule } from "./_format.ts";

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
  positionals: [{
    name: "VM",
    description: "ids or names",
    optional: true,
    variadic: true,
    complete: "vm",
  }],
  options: {
    all: { type: "boolean", description: "start every VM that is not running" },
    "wait-for": {
      type: "string",
      value: "WHAT",
      description:
        "process, qmp (default), serial:TEXT (text on the serial console), ssh (SSH runs a " +
        "command) or agent (the guest agent answers)",
      complete: ["process", "qmp", "serial:", "ssh", "agent"],
    },
    timeout: { type: "string", value: "S", description: "seconds to wait (default 60)" },
    "dry-run": { type: "boolean", description: "print the exact QEMU command line; start nothing" },
    quiet: { type: "boolean", short: "q", description: "no progress line on a terminal" },
  },
  examples: [
    "qvm start web1",
    "qvm start web1 --wait-for 'serial:login:' --timeout 120",
    "qvm start web1 web2 --wait-for ssh",
    "qvm start --all",
  ],
};

/**
 * Parses `--timeout S` (or the duration option `flag`): seconds, from 0.1 to one day (a longer
 * wait overflows timers).
 */
export function parseTimeout(value: unknown, fallback: number, flag = "--timeout"): number {
  if (value === undefined) return fallback;
  const n = typeof value === "string" && /^\s*\d*\.?\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!(n >= 0.1 && n <= MAX_WAIT_S)) {
    throw new UsageError(
      `invalid ${flag} '${value}': give seconds from 0.1 to ${MAX_WAIT_S}, e.g. 30`,
    );
  }
  return n;
}

/** Starts the VM (or each VM, several at once); prints its pid (or, with --dry-run, its command line). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const waitFor = parseWaitFor((args.values["wait-for"] as string | undefined) ?? "qmp");
  if (!waitFor) {
    throw new UsageError(
      `invalid --wait-for '${args.values["wait-for"]}': use process, qmp, serial:TEXT, ` +
        "ssh or agent",
    );
  }
  const timeoutS = parseTimeout(args.values.timeout, 60);
  const all = args.values.all === true;
  const { Progress, showStart, describeWait } = await progressModule();
  // Ctrl-C while starts wait ends qvm, not their VMs: say which were left running, and how to
  // stop them.
  const waiting = new Map<string, number>();
  const interrupted = (progress: { onInterrupt(note: () => string | undefined): void }) =>
    progress.onInterrupt(() => leftRunning(waiting, describeWait(waitFor)));
  const watch = (vm: VmRecord, show?: (event: StartProgress) => void) => (event: StartProgress) => {
    if (event.step === "wait") waiting.set(vm.name, event.pid);
    show?.(event);
  };
  if (all || args.positionals.length !== 1) {
    if (args.values["dry-run"]) throw new UsageError("qvm start: --dry-run takes one VM");
    const vms = await selectVms(ctx, {
      names: args.positionals,
      all,
      allOf: "not-live",
      command: "qvm start",
    });
    const progress = new Progress(ctx, { quiet: true });
    interrupted(progress);
    try {
      return await reportEach(ctx, vms, {
        limit: START_PARALLEL,
        act: async (vm) => {
          const started = await startVm(ctx, vm, {
            waitFor,
            deadline: Deadline.in(timeoutS * 1000),
            onProgress: watch(vm),
          }).finally(() => waiting.delete(vm.name));
          if (ctx.debug) ctx.note(shellQuote(started.argv));
          for (const disk of started.createdDisks) ctx.note(`created disk ${disk}`);
          return started;
        },
        line: (started) => startedLine(started),
        json: (started) => startedJson(started),
        none: "no VMs to start: every VM is running",
      });
    } finally {
      progress.done();
    }
  }
  const vm = ctx.store.require(args.positionals[0]);
  if (args.values["dry-run"]) {
    const argv = launchArgv(vm, vmPaths(ctx.dirs, vm.id));
    const { image, network, cloud_init, guest_agent } = vm.config;
    if (image || network || cloud_init || guest_agent) {
      argv.push(...(await cloudModule()).cloudArgvPreview(ctx, vm));
    }
    if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, argv });
    else ctx.out(shellQuote(argv));
    return 0;
  }
  const deadline = Deadline.in(timeoutS * 1000);
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const serialLog = vmPaths(ctx.dirs, vm.id).serialLog;
  interrupted(progress);
  const onProgress = watch(
    vm,
    progress.enabled ? showStart(progress, { name: vm.name, serialLog }) : undefined,
  );
  const started = await startVm(ctx, vm, { waitFor, deadline, onProgress }).finally(() =>
    progress.done()
  );
  if (ctx.debug) ctx.note(shellQuote(started.argv));
  for (const disk of started.createdDisks) ctx.note(`created disk ${disk}`);
  if (ctx.json) ctx.outJson(startedJson(started));
  else ctx.out(startedLine(started));
  return 0;
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
