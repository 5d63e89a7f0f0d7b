/**
 * Listing a VM's snapshots: each qcow2 drive's, from QMP while its QEMU runs (what QEMU sees),
 * else from the image files, with those on only some drives called out.
 */
import { NotRunningError } from "../errors.ts";
import { diskFile } from "../config/mod.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { observe } from "./observe.ts";
import { vmPaths } from "../vm_files.ts";
import { storageWithRoot } from "./storage.ts";
import {
  type PartialSnapshot,
  partialSnapshots,
  selectDrives,
  type SnapshotInfo,
  type SnapshotMode,
} from "./_snapshot.ts";
import { attachedDrives, blockDevices, connectQmp } from "./snapshot_live.ts";
import { imageSnapshots } from "./snapshot_offline.ts";

/** One drive's snapshots, for `list`. */
export interface DriveSnapshots {
  drive: string;
  file: string;
  snapshots: SnapshotInfo[];
}

/** What `list` found. */
export interface SnapshotListing {
  vm: VmRecord;
  mode: SnapshotMode;
  drives: DriveSnapshots[];
  /** Snapshots on only some of the drives listed (every qcow2 drive when none was named). */
  partial: PartialSnapshot[];
}

/**
 * The snapshots of the VM's qcow2 drives (or `drive`): from QMP `query-block` when its QEMU runs
 * (what QEMU itself sees), else from `qemu-img info -U`, and those on only some of the drives.
 * Reads only, so no lock is taken.
 */
export async function listSnapshots(
  ctx: VmEnv,
  vm: VmRecord,
  options: { drive?: string; live?: boolean } = {},
): Promise<SnapshotListing> {
  const { drives } = selectDrives(vm.name, storageWithRoot(vm, ctx.dirs), options.drive);
  const seen = await observe(ctx, vm, { qmp: false });
  vm = seen.vm;
  const diskDir = vmPaths(ctx.dirs, vm.id).diskDir;
  if (seen.status === "running" || seen.status === "frozen") {
    const client = await connectQmp(ctx, vm);
    try {
      const attached = attachedDrives(
        await blockDevices(client, storageWithRoot(vm, ctx.dirs)),
        drives.map((d) => d.name),
      );
      const listed = drives.map((d) => ({
        drive: d.name,
        file: diskFile(d, diskDir),
        snapshots: attached.get(d.name)!.snapshots,
      }));
      return { vm, mode: "live", drives: listed, partial: partialSnapshots(listed) };
    } finally {
      client.close();
      await client.closed;
    }
  }
  if (options.live) {
    throw new NotRunningError(
      `VM '${vm.name}' is not running (status: ${seen.status}): --live needs a running VM`,
    );
  }
  const listed: DriveSnapshots[] = [];
  for (const drive of drives) {
    const file = diskFile(drive, diskDir);
    listed.push({
      drive: drive.name,
      file,
      snapshots: await imageSnapshots(drive, file, { share: true }),
    });
  }
  return { vm, mode: "offline", drives: listed, partial: partialSnapshots(listed) };
}

/** The `--json` shape of a listing (dates in ISO 8601 UTC). */
export function listingJson(listing: SnapshotListing): Record<string, unknown> {
  return {
    id: listing.vm.id,
    vm: listing.vm.name,
    mode: listing.mode,
    drives: listing.drives.map((d) => ({
      drive: d.drive,
      file: d.file,
      snapshots: d.snapshots.map((s) => ({
        name: s.name,
        id: s.id,
        vm_state_size: s.vmStateSize,
        date: new Date(s.dateMs).toISOString(),
        vm_clock_ns: s.vmClockNs,
      })),
    })),
    partial: listing.partial.map((p) => ({ name: p.name, drives: p.on, missing: p.missing })),
  };
}
