/** `qvm cleanup`: remove stale sockets, pid files and locks; settle VMs whose QEMU is gone. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { tidyRuntime, type UpkeepAction } from "../vm/upkeep.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "cleanup",
  summary: "remove stale sockets, pid files and locks; settle dead VMs",
  description:
    "Removes <id>.qmp, .mon, .evt, .serial, .boot and .pid files in the runtime dir whose QEMU is\n" +
    "gone, and the .lock files of VMs no longer in the database (a known VM's lock file is its\n" +
    "lock, and stays). VMs marked starting, running or stopping whose QEMU is gone are recorded\n" +
    "as ended. A running VM's files and a lock another command holds are never touched.",
  positionals: [],
  options: {
    "dry-run": { type: "boolean", description: "print what would be done; change nothing" },
  },
  examples: ["qvm cleanup --dry-run", "qvm cleanup", "qvm cleanup --json"],
};

/** One line for a person: `removed PATH (why)` or `settled VM 'x' (why)`, `would ...` in a dry run. */
export function describeAction(action: UpkeepAction, dryRun: boolean): string {
  const verb = action.action === "remove"
    ? (dryRun ? "would remove" : "removed")
    : (dryRun ? "would settle" : "settled");
  const what = action.action === "remove" ? action.path : `VM '${action.vm}'`;
  return `${verb} ${what} (${action.reason})`;
}

/** Prints one line per action (or a JSON list of `{action, path, vm, reason}`). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const dryRun = args.values["dry-run"] === true;
  const { actions, busy } = await tidyRuntime(ctx, { dryRun });
  for (const name of busy) {
    ctx.note(`skipped VM '${name}': another qvm command holds its lock`);
  }
  if (ctx.json) {
    ctx.outJson(actions);
    return 0;
  }
  if (actions.length === 0) {
    ctx.note("nothing to clean up");
    return 0;
  }
  ctx.out(actions.map((a) => describeAction(a, dryRun)).join("\n"));
  return 0;
}
