/**
 * One command on many VMs (`start a b c`, `stop --all`, `rm --all --force`): which VMs, and a
 * bounded pool that runs each VM's operation (under that VM's own lock) beside the others. A
 * failure belongs to its VM and never stops the rest; the command's exit code sums them up.
 */
import { errorReport, ExitCode, UsageError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { isLive, needsCheck, observe } from "./observe.ts";

/**
 * VMs a bulk start (or restart) launches at once. Launching QEMU is CPU work (exec, TCG and device
 * set-up) before it is waiting, so more than about two per core only queues for the CPU.
 */
export const START_PARALLEL = Math.min(16, Math.max(4, 2 * (navigator.hardwareConcurrency || 1)));

/**
 * VMs a bulk stop (or removal) works on at once. A stop is mostly waiting for the guest to power
 * off, polling its pid and run state a few times a second: cheap to have many in flight.
 */
export const STOP_PARALLEL = 16;

/**
 * Runs `work` on every item with at most `limit` running at once; resolves with the results in
 * the items' order. `work` should not throw (the first rejection rejects the whole run).
 */
export async function inPool<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index], index);
    }
  };
  const workers = Math.max(1, Math.min(limit, items.length));
  await Promise.all(Array.from({ length: workers }, worker));
  return results;
}

/** How one VM's operation ended. */
export type Outcome<R> =
  | { vm: VmRecord; ok: true; value: R }
  | { vm: VmRecord; ok: false; error: unknown };

/**
 * Runs `act` on each VM in a pool of `limit`; `onDone` hears each outcome as it comes (to print
 * it at once). An error of `act` becomes that VM's failed outcome; one thrown by `onDone` (say,
 * stdout closed) ends the command.
 */
export function eachVm<R>(
  vms: readonly VmRecord[],
  options: { limit: number; onDone?: (outcome: Outcome<R>) => void },
  act: (vm: VmRecord) => Promise<R>,
): Promise<Outcome<R>[]> {
  return inPool(vms, options.limit, async (vm) => {
    let outcome: Outcome<R>;
    try {
      outcome = { vm, ok: true, value: await act(vm) };
    } catch (error) {
      outcome = { vm, ok: false, error };
    }
    options.onDone?.(outcome);
    return outcome;
  });
}

/**
 * The exit code of a command on many VMs: 0 when every VM succeeded; when some failed, their
 * exit code if they all share one (all timed out: 2), else 1.
 */
export function bulkExitCode(outcomes: readonly Outcome<unknown>[]): number {
  const codes = new Set<number>();
  for (const outcome of outcomes) {
    if (!outcome.ok) codes.add(errorReport(outcome.error).exitCode);
  }
  if (codes.size === 0) return ExitCode.ok;
  return codes.size === 1 ? [...codes][0] : ExitCode.failure;
}

/** Which VMs `--all` means: every VM whose QEMU runs (`live`), every VM without one, or all. */
export type AllOf = "live" | "not-live" | "any";

/**
 * The VMs a command names, each looked up (an unknown name is a NotFoundError, before anything
 * is done) and given once in the order named; or with `all`, every VM that is (or is not) live,
 * or every VM (`any`), by name. `command` names the command in a usage error.
 */
export async function selectVms(
  env: VmEnv,
  options: { names: readonly string[]; all: boolean; allOf: AllOf; command: string },
): Promise<VmRecord[]> {
  const { names, all, command } = options;
  if (all && names.length > 0) throw new UsageError(`${command}: give VM names or --all, not both`);
  if (!all) {
    if (names.length === 0) throw new UsageError(`${command}: missing argument VM (or --all)`);
    const byId = new Map<string, VmRecord>();
    for (const name of names) {
      const vm = env.store.require(name);
      if (!byId.has(vm.id)) byId.set(vm.id, vm);
    }
    return [...byId.values()];
  }
  if (options.allOf === "any") return env.store.list();
  const wanted = options.allOf === "live";
  const chosen: VmRecord[] = [];
  // Only a VM whose row claims a process needs a look at the machine; the rest are not live.
  for (const brief of env.store.listBrief()) {
    if (!needsCheck(brief)) {
      if (!wanted) chosen.push(env.store.require(brief.id));
      continue;
    }
    const seen = await observe(env, env.store.require(brief.id), { qmp: false });
    if (isLive(seen.status) === wanted) chosen.push(seen.vm);
  }
  return chosen;
}
