/** `qvm rm`: remove VMs; running ones need --force (which stops them); disks stay unless asked. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { QvmError, UsageError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import { observe } from "../vm/observe.ts";
import { acquireLock } from "../vm/lock.ts";
import { removeQuietly, runtimeFiles, vmPaths } from "../vm/paths.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "rm",
  summary: "remove VMs (storage kept unless --delete-storage)",
  description:
    "Every named VM is checked before any is removed. Running VMs need --force, which stops them\n" +
    "at once. --delete-storage deletes only disk files qvm itself created. On a terminal, qvm asks\n" +
    "before removing unless --yes.",
  positionals: [{
    name: "VM",
    description: "ids or names",
    optional: true,
    variadic: true,
    complete: "vm",
  }],
  options: {
    all: { type: "boolean", description: "remove every VM" },
    force: { type: "boolean", short: "f", description: "stop running VMs first" },
    "delete-storage": { type: "boolean", description: "also delete disks qvm created" },
    yes: { type: "boolean", short: "y", description: "do not ask for confirmation" },
  },
  examples: ["qvm rm web1", "qvm rm --all --force --yes"],
};

function confirm(question: string): boolean {
  if (!Deno.stdin.isTerminal() || !Deno.stdout.isTerminal()) return true;
  const answer = prompt(`${question} [y/N]`);
  return answer !== null && /^y(es)?$/i.test(answer.trim());
}

/** Removes one VM's row and files; storage only when asked and only what qvm created. */
async function removeOne(ctx: Context, vm: VmRecord, args: ParsedArgs): Promise<string[]> {
  const paths = vmPaths(ctx.dirs, vm.id);
  const lock = await acquireLock(paths.lockFile, { timeoutMs: 30_000, what: `VM '${vm.name}'` });
  const deleted: string[] = [];
  try {
    const seen = await observe(ctx, ctx.store.require(vm.id), { qmp: false, locked: true });
    if (seen.status === "running" || seen.status === "stopping" || seen.status === "starting") {
      if (!args.values.force) {
        throw new QvmError(`VM '${vm.name}' is ${seen.status}: use --force to stop and remove it`);
      }
      const { stopVm } = await import("../vm/stop.ts");
      await stopVm(ctx, seen.vm, { force: true, locked: true });
    }
    ctx.store.remove(vm.id);
    runtimeFiles(paths).forEach(removeQuietly);
    removeQuietly(paths.serialLog);
    removeQuietly(paths.qemuLog);
    if (args.values["delete-storage"]) {
      for (const file of vm.createdFiles) if (removeQuietly(file)) deleted.push(file);
      removeQuietly(paths.diskDir); // only if empty: never a recursive delete
    }
  } finally {
    lock.release();
  }
  return deleted;
}

/** Checks every VM first, then removes them one by one; prints what was removed. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  if (args.values.all && args.positionals.length > 0) {
    throw new UsageError("rm: give VM names or --all, not both");
  }
  if (!args.values.all && args.positionals.length === 0) {
    throw new UsageError("rm: missing argument VM (or --all)");
  }
  const vms = args.values.all ? ctx.store.list() : [
    ...new Map(args.positionals.map((n) => ctx.store.require(n)).map((v) => [v.id, v])).values(),
  ];
  if (!args.values.force) {
    for (const vm of vms) {
      const seen = await observe(ctx, vm, { qmp: false });
      if (seen.status === "running" || seen.status === "starting" || seen.status === "stopping") {
        throw new QvmError(`VM '${vm.name}' is ${seen.status}: use --force to stop and remove it`);
      }
    }
  }
  if (vms.length > 0 && !args.values.yes) {
    const what = vms.length === 1 ? `VM '${vms[0].name}'` : `${vms.length} VMs`;
    const storage = args.values["delete-storage"] ? " and its storage" : "";
    if (!confirm(`Remove ${what}${storage}?`)) {
      ctx.note("nothing removed");
      return 1;
    }
  }
  const removed = [];
  for (const vm of vms) {
    const deletedFiles = await removeOne(ctx, vm, args);
    removed.push({ id: vm.id, name: vm.name, deleted_files: deletedFiles });
    if (!ctx.json) ctx.out(`removed ${vm.name}`);
  }
  if (ctx.json) ctx.outJson(removed);
  return 0;
}
