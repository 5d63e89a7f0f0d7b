/**
 * `qvm wait`: block until a VM reaches a state (running, stopped, answering over SSH or the guest
 * agent, or a text on its serial console). Exit 0 when reached, 2 on timeout, 1 as soon as the VM
 * is somewhere it cannot reach the state from by itself (e.g. stopped while waiting for ssh).
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { QvmError, TimeoutError, UsageError } from "../errors.ts";
import { sleep } from "../timers.ts";
import type { VmRecord } from "../state/mod.ts";
import { Deadline } from "../vm/env.ts";
import { FAULT_STATES, isLive, observe, type ObservedStatus } from "../vm/observe.ts";
import { checkQemu, faultError, kvmInUse, QemuFault } from "../vm/fault.ts";
import { vmPaths } from "../vm_files.ts";
import { serialStart } from "../vm/serial_start.ts";
import { parseTimeout } from "./start.ts";
import { cloudModule } from "../cloud/lazy.ts";
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
    timeout: { type: "string", value: "S", description: "seconds to wait (default 60)" },
    quiet: { type: "boolean", short: "q", description: "no progress line on a terminal" },
  },
  examples: [
    "qvm wait web1 --for running",
    "qvm wait web1 --for ssh --timeout 300",
    "qvm wait web1 --for 'serial:login:'",
    "qvm wait web1 --for stopped && qvm rm web1",
  ],
};

/** What `wait --for` waits for. */
export type WaitTarget =
  | { kind: "running" | "stopped" | "ssh" | "agent" }
  | { kind: "serial"; text: string };

/** Parses a `--for` value; undefined if it is not one. */
export function parseTarget(value: string): WaitTarget | undefined {
  if (["running", "stopped", "ssh", "agent"].includes(value)) {
    return { kind: value as "running" | "stopped" | "ssh" | "agent" };
  }
  if (value.startsWith("serial:") && value.length > "serial:".length) {
    return { kind: "serial", text: value.slice("serial:".length) };
  }
  return undefined;
}

/**
 * Whether `status` reaches `target` (`true`), may still (`undefined`), or cannot by itself (the
 * reason). Pure: the table `wait` acts on.
 */
export function verdict(target: WaitTarget, status: ObservedStatus): true | string | undefined {
  if (target.kind === "stopped") return isLive(status) ? undefined : true;
  if (FAULT_STATES.has(status)) return `it is in QEMU run state ${status}`;
  if (target.kind === "running") return status === "running" ? true : undefined;
  if (!isLive(status)) return `it is ${status}`;
  return undefined; // ssh, agent, serial: the caller probes a running VM
}

const POLL_MS = 200;

function fileSize(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch {
    return 0;
  }
}

/** Looks for `text` in what `file` gained since `state.offset`; advances the offset. */
async function serialHas(
  file: string,
  state: { offset: number; carry: string; text: string },
): Promise<boolean> {
  let handle: Deno.FsFile;
  try {
    handle = await Deno.open(file, { read: true });
  } catch {
    return false;
  }
  try {
    if ((await handle.stat()).size < state.offset) state.offset = 0; // truncated or replaced
    await handle.seek(state.offset, Deno.SeekMode.Start);
    const buf = new Uint8Array(65536);
    const decoder = new TextDecoder();
    let n: number | null;
    while ((n = await handle.read(buf)) !== null && n > 0) {
      state.offset += n;
      state.carry += decoder.decode(buf.subarray(0, n), { stream: true });
      if (state.carry.includes(state.text)) return true;
      state.carry = state.carry.slice(-state.text.length);
    }
    return false;
  } finally {
    handle.close();
  }
}

function describe(target: WaitTarget): string {
  return target.kind === "serial" ? `serial:${target.text}` : target.kind;
}

/** Waits for `target`; resolves when reached, throws QvmError (1) or TimeoutError (2). */
async function waitFor(
  ctx: Context,
  vm: VmRecord,
  options: { target: WaitTarget; deadline: Deadline; seen: (status: string) => void },
): Promise<void> {
  const { target, deadline } = options;
  const paths = vmPaths(ctx.dirs, vm.id);
  // This run's output only: from where the log stood when its QEMU started (recorded by start),
  // else, for a QEMU started without that record, from now.
  const serial = target.kind === "serial"
    ? { offset: serialStart(paths) ?? fileSize(paths.serialLog), carry: "", text: target.text }
    : undefined;
  const cantReach = (why: string) =>
    new QvmError(`VM '${vm.name}' cannot reach ${describe(target)}: ${why}`);
  let sawLive = false;
  while (true) {
    const row = ctx.store.get(vm.id);
    if (!row || row.id !== vm.id) throw cantReach("it was removed");
    const seen = await observe(ctx, row, {
      qmp: target.kind !== "stopped",
      timeoutMs: Math.max(Math.min(deadline.remainingMs(), 1000), 50),
    });
    options.seen(seen.status);
    const answer = verdict(target, seen.status);
    if (answer === true) return;
    if (typeof answer === "string") {
      // The guest may have printed the text just before it stopped, between two looks.
      if (serial && sawLive && await serialHas(paths.serialLog, serial)) return;
      if (FAULT_STATES.has(seen.status)) {
        throw cantReach(faultError(seen.status, await kvmInUse(paths)).message);
      }
      throw cantReach(answer);
    }
    if (isLive(seen.status)) sawLive = true;
    if (serial && await serialHas(paths.serialLog, serial)) return;
    if (seen.status === "running" && (target.kind === "ssh" || target.kind === "agent")) {
      const { waitForGuest } = await cloudModule();
      const pid = seen.vm.pid!;
      try {
        await waitForGuest(ctx, seen.vm, {
          kind: target.kind,
          deadline: deadline.at,
          check: () => checkQemu(ctx, seen.vm, { pid, gone: "QEMU exited" }),
        });
        return;
      } catch (err) {
        if (err instanceof TimeoutError) throw err;
        if (err instanceof QemuFault) throw cantReach(err.message);
        // No forward to port 22, or no agent channel: this VM never answers that way.
        if (err instanceof UsageError) throw new QvmError(err.message);
        // QEMU went away meanwhile: the next look says where the VM ended up.
        if (!(err instanceof QvmError)) throw err;
        continue;
      }
    }
    if (deadline.expired) {
      throw new TimeoutError(
        `VM '${vm.name}' did not reach ${describe(target)} in time (status: ${seen.status})`,
      );
    }
    await sleep(Math.min(POLL_MS, Math.max(deadline.remainingMs(), 1)));
  }
}

/** Waits; prints `NAME: STATE` (or JSON) once the state is reached. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const value = args.values.for as string | undefined;
  if (value === undefined) {
    throw new UsageError("wait: give --for running, stopped, ssh, agent or serial:TEXT");
  }
  const target = parseTarget(value);
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
    `waiting for ${vm.name} to reach ${describe(target)} · ` +
    progress.dim(`${formatSeconds(Date.now() - began)}${status ? ` · status: ${status}` : ""}`)
  );
  await waitFor(ctx, vm, { target, deadline, seen: (s) => status = s }).finally(() =>
    progress.done()
  );
  if (ctx.json) {
    ctx.outJson({
      id: vm.id,
      name: vm.name,
      reached: describe(target),
      elapsed_ms: Date.now() - began,
    });
  } else {
    ctx.out(`${vm.name}: ${describe(target)}`);
  }
  return 0;
}
