/**
 * `qvm snapshot create|load|list|delete`: internal snapshots of a VM's qcow2 drives, offline with
 * qemu-img while it is stopped, live over QMP (VM state included) while it runs.
 */
import type { Context } from "./context.ts";
import type { CommandSpec, OptionSpec, ParsedArgs, PositionalSpec } from "./spec.ts";
import {
  formatDate,
  formatVmClock,
  type SnapshotAction,
  type SnapshotOutcome,
} from "../vm/_snapshot.ts";
import { outcomeJson, snapshotVm } from "../vm/snapshot_action.ts";
import { listingJson, listSnapshots, type SnapshotListing } from "../vm/snapshot_list.ts";
import { table } from "./_format.ts";
import { formatSize } from "./_size.ts";
import { parseTimeout } from "./_options.ts";
import { progressModule } from "./_format.ts";

const DEFAULT_TIMEOUT_S = 300;

const vmArg: PositionalSpec = { name: "VM", description: "id or name", complete: "vm" };
const nameArg: PositionalSpec = { name: "NAME", description: "snapshot name" };

const quiet: OptionSpec = {
  type: "boolean",
  short: "q",
  description: "no progress line on a terminal",
};
const drive: OptionSpec = {
  type: "string",
  value: "D",
  description: "only this drive (a storage item's name); default: every qcow2 drive",
};
const live: OptionSpec = {
  type: "boolean",
  description: "insist on the live path (error if the VM is not running)",
};
const timeout: OptionSpec = {
  type: "string",
  value: "S",
  description: `seconds to wait for locks and for each live job (default ${DEFAULT_TIMEOUT_S})`,
};

const MODES =
  "Without --live, a running VM gets a live snapshot (QMP jobs, QEMU >= 6.0, VM state\n" +
  "saved too) and a stopped VM an offline one ('qemu-img snapshot', disks only).\n" +
  "A snapshot with VM state covers every writable drive or is refused: a raw writable drive,\n" +
  "or --drive leaving one out, would keep newer data under the older memory it brings back\n" +
  "(read-only drives, cdroms and virtfs shares do not count). Disk-only snapshots (offline,\n" +
  "or live with --disk-only) skip raw drives with a warning; --drive names one drive.";

/** The command's subcommands and their arguments. */
export const spec: CommandSpec = {
  name: "snapshot",
  summary: "create, load, list or delete disk snapshots (offline or live)",
  description: MODES,
  positionals: [],
  options: {},
  subcommands: [
    {
      name: "create",
      summary: "take snapshot NAME of the VM's qcow2 drives",
      description: MODES +
        "\nA live snapshot keeps the VM state on the first drive (or --drive).\n" +
        "An existing NAME is an error unless --overwrite (which deletes it first).\n" +
        "NAME: at most 255 bytes in UTF-8 (QEMU cuts longer names), no spaces, not all digits.",
      positionals: [vmArg, nameArg],
      options: {
        drive,
        live,
        "disk-only": {
          type: "boolean",
          description: "running VM: snapshot the drives without VM state (need not cover them all)",
        },
        overwrite: { type: "boolean", description: "replace a snapshot of the same name" },
        timeout,
        quiet,
      },
      examples: [
        "qvm snapshot create web1 before-upgrade",
        "qvm snapshot create web1 base --drive hdd --disk-only",
      ],
    },
    {
      name: "load",
      summary: "revert the VM's qcow2 drives (and, live, its running state) to snapshot NAME",
      description: MODES + "\nA live load needs a snapshot taken live (one with VM state), on\n" +
        "every writable drive. If QEMU fails the load, the drives are already rolled back but the\n" +
        "memory is not: reset or stop the VM, or load another snapshot (which runs it on).",
      positionals: [vmArg, nameArg],
      options: { drive, live, timeout, quiet },
      examples: ["qvm snapshot load web1 before-upgrade"],
    },
    {
      name: "list",
      summary: "list each qcow2 drive's snapshots: name, id, VM state size, date",
      description: "A running VM's snapshots are read over QMP (what QEMU sees); a stopped VM's\n" +
        "with 'qemu-img info -U'. A snapshot on only some of the drives (an interrupted create\n" +
        "or delete) is flagged as partial on stderr, with the commands that remove it.",
      positionals: [vmArg],
      options: { drive, live },
      examples: ["qvm snapshot list web1", "qvm snapshot list web1 --json"],
    },
    {
      name: "delete",
      summary: "delete snapshot NAME from the VM's qcow2 drives",
      description: MODES,
      positionals: [vmArg, nameArg],
      options: { drive, live, timeout, quiet },
      examples: ["qvm snapshot delete web1 before-upgrade"],
    },
  ],
  examples: [
    "qvm snapshot create web1 before",
    "qvm snapshot list web1",
    "qvm snapshot load web1 before",
  ],
};

const PAST: Readonly<Record<SnapshotAction, string>> = {
  create: "created",
  load: "loaded",
  delete: "deleted",
};

/** One line per drive and action, e.g. `created snapshot 'before' on hdd (live, VM state)`. */
export function formatOutcome(outcome: SnapshotOutcome, name: string): string {
  return outcome.done.map((d) => {
    const how = outcome.mode === "live" ? (d.vmState ? " (live, VM state)" : " (live)") : "";
    return `${PAST[d.action]} snapshot '${name}' on ${d.drive}${how}`;
  }).join("\n");
}

/** What the guest agent did for the guest's file systems, as one line (undefined: no agent). */
export function quiesceNote(outcome: SnapshotOutcome): string | undefined {
  const q = outcome.quiesce;
  if (!q) return undefined;
  if (q.frozen > 0) return `froze ${q.frozen} guest file system(s) around the save, then thawed`;
  if (q.thawed) return "thawed the guest's file systems (the snapshot was saved frozen)";
  if (q.reason) return `guest file systems not frozen: ${q.reason}`;
  return undefined;
}

/** A listing as a table (one row per drive and snapshot) and a line for drives without any. */
export function formatListing(listing: SnapshotListing): string {
  const rows = listing.drives.flatMap((d) =>
    d.snapshots.map((s) => [
      d.drive,
      s.name,
      s.id,
      formatSize(s.vmStateSize),
      formatDate(s.dateMs),
      formatVmClock(s.vmClockNs),
    ])
  );
  const empty = listing.drives.filter((d) => d.snapshots.length === 0).map((d) => d.drive);
  const lines: string[] = [];
  if (rows.length > 0) {
    lines.push(table(["DRIVE", "NAME", "ID", "VM STATE", "DATE", "VM CLOCK"], rows));
  }
  if (empty.length > 0) lines.push(`no snapshots on ${empty.join(", ")}`);
  return lines.join("\n");
}

/**
 * One line per snapshot on only some drives, with the way to repair: delete it where it is (the
 * drives without it cannot be given the same point in time).
 */
export function partialLines(listing: SnapshotListing): string[] {
  return listing.partial.map((p) =>
    `partial: snapshot '${p.name}' is on ${p.on.join(", ")} but not on ${p.missing.join(", ")} ` +
    "(an interrupted create or delete); remove it with " +
    p.on.map((d) => `'qvm snapshot delete ${listing.vm.name} ${p.name} --drive ${d}'`).join(", ")
  );
}

/** Runs the chosen subcommand and prints what it did (or the listing). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const vm = ctx.store.require(args.positionals[0]);
  const driveName = args.values.drive as string | undefined;
  if (args.subcommand === "list") {
    const listing = await listSnapshots(ctx, vm, {
      drive: driveName,
      live: args.values.live === true,
    });
    if (ctx.json) ctx.outJson(listingJson(listing));
    else ctx.out(formatListing(listing));
    if (!ctx.json) partialLines(listing).forEach((line) => ctx.warn(line));
    return 0;
  }
  const name = args.positionals[1];
  const { Progress, formatSeconds } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const began = Date.now();
  const what = `snapshot ${args.subcommand} ${vm.name} ${name}`;
  const elapsed = () => progress.dim(formatSeconds(Date.now() - began));
  progress.show(() => `${what} · ${elapsed()}`);
  const outcome = await snapshotVm(ctx, vm, {
    action: args.subcommand as SnapshotAction,
    name,
    drive: driveName,
    live: args.values.live === true,
    overwrite: args.values.overwrite === true,
    diskOnly: args.values["disk-only"] === true,
    timeoutS: parseTimeout(args.values.timeout, DEFAULT_TIMEOUT_S),
    onJob: (job) =>
      progress.show(() => `${what}: ${job.op} job ${job.status} ${job.percent}% · ${elapsed()}`),
  }).finally(() => progress.done());
  for (const skipped of outcome.skipped) {
    ctx.warn(`skipped raw drive '${skipped}' (snapshots need qcow2)`);
  }
  const quiesced = quiesceNote(outcome);
  if (quiesced && !ctx.json) ctx.note(quiesced);
  if (ctx.json) ctx.outJson(outcomeJson(outcome, name));
  else ctx.out(formatOutcome(outcome, name));
  return 0;
}
