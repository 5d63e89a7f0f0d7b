/** `qvm ls`: every VM with its real status (checked in parallel, each bounded by a timeout). */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { isLive, observeAll, STATUSES } from "../vm/observe.ts";
import { paintStatus, table } from "./_format.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "ls",
  summary: "list VMs and their real status",
  positionals: [],
  options: {
    status: {
      type: "string",
      value: "STATUS",
      description: `only VMs with this status (${STATUSES.join(", ")})`,
      complete: STATUSES,
    },
    quiet: { type: "boolean", short: "q", description: "print only VM names, one per line" },
  },
  examples: ["qvm ls", "qvm ls --status running --json"],
};

/** Prints a table, or a JSON array of `{id, name, status, pid}`. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const wanted = args.values.status as string | undefined;
  if (wanted !== undefined && !(STATUSES as readonly string[]).includes(wanted)) {
    throw new UsageError(`ls: unknown status '${wanted}' (expected ${STATUSES.join(", ")})`);
  }
  const all = ctx.store.listBrief();
  // Names alone (for completions) need no reconciling unless a status filter asks for it.
  const seen = args.values.quiet && wanted === undefined
    ? all.map((vm) => ({ vm, status: vm.status }))
    : await observeAll(ctx, all);
  const shown = wanted === undefined ? seen : seen.filter((o) => o.status === wanted);
  if (args.values.quiet) {
    if (shown.length > 0) ctx.out(shown.map((o) => o.vm.name).join("\n"));
    return 0;
  }
  if (ctx.json) {
    ctx.outJson(shown.map((o) => ({
      id: o.vm.id,
      name: o.vm.name,
      status: o.status,
      pid: isLive(o.status) ? o.vm.pid : null,
    })));
    return 0;
  }
  if (shown.length === 0) {
    ctx.note(wanted ? `no VMs with status ${wanted}` : "no VMs defined (see 'qvm add --help')");
    return 0;
  }
  ctx.out(table(
    ["NAME", "STATUS", "PID", "ID"],
    shown.map((
      o,
    ) => [o.vm.name, paintStatus(o.status), o.vm.pid ? String(o.vm.pid) : "-", o.vm.id]),
  ));
  return 0;
}
