/**
 * How a command on many VMs reports: one line per VM as it ends (`started a (pid N)`; a failure
 * as `qvm: NAME: ...` on stderr), or with `--json` one array of per-VM results, in the order the
 * VMs were named. The pool and the exit code come from `vm/bulk.ts`.
 */
import type { Context } from "./context.ts";
import { errorReport } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import type { ParsedArgs } from "./spec.ts";
import { type AllOf, bulkExitCode, eachVm, selectVms } from "../vm/bulk.ts";

/** What a command tells `reportEach`: the pool's size, the work, and how a success is shown. */
export interface EachOptions<R> {
  limit: number;
  act(vm: VmRecord): Promise<R>;
  /** The line printed for a success. */
  line(value: R, vm: VmRecord): string;
  /** The `--json` object of a success. */
  json(value: R, vm: VmRecord): Record<string, unknown>;
  /** Said on stderr when `--all` found no VM to work on. */
  none?: string;
}

/** Runs the command on every VM in `vms` and reports each; returns the command's exit code. */
export async function reportEach<R>(
  ctx: Context,
  vms: readonly VmRecord[],
  options: EachOptions<R>,
): Promise<number> {
  if (vms.length === 0) {
    if (ctx.json) ctx.outJson([]);
    else if (options.none) ctx.note(options.none);
    return 0;
  }
  const outcomes = await eachVm(vms, {
    limit: options.limit,
    onDone: (outcome) => {
      if (outcome.ok) {
        if (!ctx.json) ctx.out(options.line(outcome.value, outcome.vm));
        return;
      }
      const { message, detail } = errorReport(outcome.error);
      ctx.note(`qvm: ${outcome.vm.name}: ${message}`);
      if (detail) ctx.note(detail.trimEnd());
    },
  }, options.act);
  if (ctx.json) {
    ctx.outJson(outcomes.map((outcome) => {
      if (outcome.ok) return options.json(outcome.value, outcome.vm);
      const { message, exitCode } = errorReport(outcome.error);
      return { id: outcome.vm.id, name: outcome.vm.name, error: message, exit_code: exitCode };
    }));
  }
  return bulkExitCode(outcomes);
}

/**
 * The VMs of a command that works on one or several (`VM...` or `--all`), or undefined when it
 * names exactly one: that one runs on its own, with a progress line.
 */
export function bulkVms(
  ctx: Context,
  args: ParsedArgs,
  options: { allOf: AllOf; command: string },
): Promise<VmRecord[] | undefined> {
  const all = args.values.all === true;
  if (!all && args.positionals.length === 1) return Promise.resolve(undefined);
  return selectVms(ctx, { names: args.positionals, all, ...options });
}
