/**
 * `qvm storage ls|verify|orphaned`: what each VM's disks are (qemu-img info, read with -U so a
 * running VM's disks work too), whether they are intact, and which image files nobody uses.
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import type { DiskResult } from "../vm/storage.ts";
import {
  type DiskReport,
  listStorage,
  orphanedStorage,
  type VerifyProgress,
  verifyStorage,
} from "../vm/storage_report.ts";
import type { VmRecord } from "../state/mod.ts";
import { table } from "./_format.ts";
import { formatSize } from "./_size.ts";
import { progressModule } from "./_format.ts";

const vmArg = {
  name: "VM",
  description: "id or name (default: every VM)",
  optional: true,
  complete: "vm",
} as const;

/** The command's subcommands and their arguments. */
export const spec: CommandSpec = {
  name: "storage",
  summary: "list, verify, or find orphaned disk images",
  positionals: [],
  options: {},
  subcommands: [
    {
      name: "ls",
      summary: "list each VM's storage: format, virtual and actual size, backing file",
      description:
        "Images are read with 'qemu-img info -U', so disks of running VMs work too. A\n" +
        "disk that does not exist yet (qvm creates it on first start) shows as missing.",
      positionals: [vmArg],
      options: {},
      examples: ["qvm storage ls", "qvm storage ls web1 --json"],
    },
    {
      name: "verify",
      summary: "find missing and corrupt disk images (exit 1 if any)",
      description:
        "qcow2 disks are checked with 'qemu-img check -U'; raw disks only need to exist.\n" +
        "A missing disk qvm created is a problem; one never created yet (the next start creates\n" +
        "it) is noted but is not. A running VM's qcow2 can show leaks that are only in flight:\n" +
        "re-check it stopped before repairing.",
      positionals: [vmArg],
      options: {
        quiet: { type: "boolean", short: "q", description: "no progress line on a terminal" },
      },
      examples: ["qvm storage verify", "qvm storage verify web1 --json"],
    },
    {
      name: "orphaned",
      summary: "list files in qvm's disk folder that no VM references (deletes nothing)",
      description: "Looks under <data-dir>/disks for files that are neither a VM's disk, nor a\n" +
        "disk's backing file, nor a file qvm created for a VM that still exists.",
      positionals: [],
      options: {},
      examples: ["qvm storage orphaned", "qvm storage orphaned --json"],
    },
  ],
  examples: ["qvm storage ls", "qvm storage verify", "qvm storage orphaned"],
};

function noStorage(ctx: Context, args: ParsedArgs, vms: VmRecord[]): void {
  if (args.positionals[0] !== undefined) ctx.note(`VM '${vms[0].name}' has no storage`);
  else if (vms.length === 0) ctx.note("no VMs defined (see 'qvm add --help')");
  else ctx.note("no VM has storage");
}

async function list(ctx: Context, args: ParsedArgs): Promise<number> {
  const { vms, rows } = await listStorage(ctx, args.positionals[0]);
  if (ctx.json) {
    ctx.outJson(rows);
    return 0;
  }
  if (rows.length === 0) {
    noStorage(ctx, args, vms);
    return 0;
  }
  ctx.out(table(
    ["VM", "STORAGE", "TYPE", "STATE", "FORMAT", "VIRTUAL", "ACTUAL", "BACKING", "PATH"],
    rows.map((r) => [
      r.vm,
      r.storage,
      r.type,
      r.state,
      r.format ?? "-",
      formatSize(r.virtual_size),
      formatSize(r.actual_size),
      r.backing_file ?? "-",
      r.path,
    ]),
  ));
  for (const r of rows) {
    if (r.error) ctx.warn(`${r.path}: ${r.error}`);
  }
  return 0;
}

const RESULT_WORDS: Record<DiskResult, string> = {
  ok: "ok",
  not_created: "not created yet",
  missing: "missing",
  wrong_size: "wrong size",
  unreadable: "unreadable",
  corrupt: "corrupt",
  leaks: "leaks",
};

async function verify(ctx: Context, args: ParsedArgs): Promise<number> {
  const { Progress, formatSeconds } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const began = Date.now();
  let at: VerifyProgress = { checked: 0, total: 0, current: "" };
  const { vms, results } = await verifyStorage(ctx, args.positionals[0], {
    onProgress: (state) => {
      at = state;
      progress.show(() =>
        `verifying disks: ${at.checked} of ${at.total} checked · ` +
        progress.dim(`${formatSeconds(Date.now() - began)}${at.current ? ` · ${at.current}` : ""}`)
      );
    },
  }).finally(() => progress.done());
  const problems = results.filter((r) => r.problem);
  if (ctx.json) {
    ctx.outJson(results);
    return problems.length > 0 ? 1 : 0;
  }
  if (results.length === 0) {
    noStorage(ctx, args, vms);
    return 0;
  }
  return report(ctx, results);
}

/** Prints what is not ok, then the count of problems (exit 1) or that all disks are ok. */
function report(ctx: Context, results: DiskReport[]): number {
  const problems = results.filter((r) => r.problem);
  for (const r of results) {
    if (r.result === "ok") continue;
    const where = `${r.path} (VM '${r.vm}', disk '${r.storage}')`;
    const note = r.problem && r.vm_running ? " [VM is running: re-check it stopped]" : "";
    ctx.out(
      `${r.problem ? "problem" : "note"}: ${where}: ${RESULT_WORDS[r.result]}` +
        `${r.detail ? ` - ${r.detail}` : ""}${note}`,
    );
  }
  if (problems.length > 0) {
    ctx.note(`${problems.length} of ${results.length} disks have problems`);
    return 1;
  }
  const notCreated = results.filter((r) => r.result === "not_created").length;
  ctx.out(
    notCreated === 0
      ? `all ${results.length} disks ok`
      : `all ${results.length - notCreated} existing disks ok; ${notCreated} not created yet`,
  );
  return 0;
}

function orphaned(ctx: Context): number {
  const files = orphanedStorage(ctx);
  if (ctx.json) {
    ctx.outJson(files);
    return 0;
  }
  if (files.length === 0) {
    ctx.note("no orphaned files");
    return 0;
  }
  ctx.out(table(
    ["SIZE", "ALLOCATED", "PATH"],
    files.map((f) => [formatSize(f.size), formatSize(f.allocated), f.path]),
  ));
  ctx.note("qvm deletes none of these; remove one with: rm -- PATH");
  return 0;
}

/** Runs the chosen subcommand; `verify` exits 1 when any disk has a problem. */
export function run(ctx: Context, args: ParsedArgs): Promise<number> | number {
  switch (args.subcommand) {
    case "ls":
      return list(ctx, args);
    case "verify":
      return verify(ctx, args);
    default:
      return orphaned(ctx);
  }
}
