/** `qvm rm`: remove VMs; running ones need --force (which stops them); disks stay unless asked. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { Deadline } from "../vm/env.ts";
import { refuseLive, removeVm } from "../vm/remove.ts";
import { selectVms, STOP_PARALLEL } from "../vm/bulk.ts";
import type { VmRecord } from "../state/mod.ts";
import { reportEach } from "./_bulk.ts";
import { vmsPositional } from "./_options.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "rm",
  summary: "remove VMs (storage kept unless --delete-storage)",
  description:
    "Every named VM is checked before any is removed. Running VMs need --force, which stops them\n" +
    "at once. --delete-storage deletes only disk files qvm itself created, and keeps (saying so)\n" +
    "any that another VM reaches: as a disk, image:, backing file, a file in its arguments/args,\n" +
    "or down a backing chain. On a terminal, qvm asks before removing unless --yes. Several VMs\n" +
    `are removed side by side, up to ${STOP_PARALLEL} at once; a failure is reported on its VM's\n` +
    "line and the others go on (exit code as 'stop').",
  positionals: [vmsPositional],
  options: {
    all: { type: "boolean", description: "remove every VM" },
    force: { type: "boolean", short: "f", description: "stop running VMs first" },
    "delete-storage": { type: "boolean", description: "also delete disks qvm created" },
    yes: { type: "boolean", short: "y", description: "do not ask for confirmation" },
  },
  examples: ["qvm rm web1", "qvm rm --all --force --yes"],
};

/** How long removing one VM may take, waiting for its lock and stopping it included. */
const RM_WAIT_MS = 30_000;

function confirm(question: string): boolean {
  if (!Deno.stdin.isTerminal() || !Deno.stdout.isTerminal()) return true;
  const answer = prompt(`${question} [y/N]`);
  return answer !== null && /^y(es)?$/i.test(answer.trim());
}

/** Checks every VM first, then removes them (several side by side); prints what was removed. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const vms = await selectVms(ctx, {
    names: args.positionals,
    all: args.values.all === true,
    allOf: "any",
    command: "rm",
  });
  if (!args.values.force) await refuseLive(ctx, vms);
  if (vms.length > 0 && !args.values.yes) {
    const what = vms.length === 1 ? `VM '${vms[0].name}'` : `${vms.length} VMs`;
    const storage = args.values["delete-storage"] ? " and its storage" : "";
    if (!confirm(`Remove ${what}${storage}?`)) {
      ctx.note("nothing removed");
      return 1;
    }
  }
  const removeOne = async (vm: VmRecord) => {
    const { deleted, kept } = await removeVm(ctx, vm, {
      deadline: Deadline.in(RM_WAIT_MS),
      force: args.values.force === true,
      deleteStorage: args.values["delete-storage"] === true,
    });
    for (const { file, reason } of kept) ctx.note(`kept ${file}: ${reason}`);
    return {
      id: vm.id,
      name: vm.name,
      deleted_files: deleted,
      kept_files: kept.map(({ file, reason }) => ({ file, reason })),
    };
  };
  if (vms.length > 1) {
    // Side by side, each VM under its own lock; a failure is that VM's, the others go on.
    return await reportEach(ctx, vms, {
      limit: STOP_PARALLEL,
      act: removeOne,
      line: (_, vm) => `removed ${vm.name}`,
      json: (removed) => removed,
    });
  }
  const removed = [];
  for (const vm of vms) {
    removed.push(await removeOne(vm));
    if (!ctx.json) ctx.out(`removed ${vm.name}`);
  }
  if (ctx.json) ctx.outJson(removed);
  return 0;
}
