/**
 * The pure core of `qvm snapshot`: which drives an operation touches, what a snapshot name may be,
 * reading snapshot tables (qemu-img info JSON and QMP `query-block` share one shape), and planning
 * the steps of an action from the snapshots that already exist. No I/O here.
 */
import { NotFoundError, UsageError } from "../errors.ts";
import type { DiskStorage, StorageItem } from "../config/types.ts";

/** What `snapshot create|load|delete` does. */
export type SnapshotAction = "create" | "load" | "delete";

/** One internal snapshot of a qcow2 image. */
export interface SnapshotInfo {
  name: string;
  /** qcow2's own numeric id, as text (`"1"`). */
  id: string;
  /** Bytes of VM state (RAM, devices) saved with it; 0 for a disk-only (offline) snapshot. */
  vmStateSize: number;
  /** When it was taken, in milliseconds since the epoch. */
  dateMs: number;
  /** The guest's clock when it was taken, in nanoseconds (0 for offline snapshots). */
  vmClockNs: number;
}

/** The drives an operation touches, and the raw drives it passed over (no drive was named). */
export interface DriveSelection {
  drives: DiskStorage[];
  skipped: DiskStorage[];
}

function diskList(storage: readonly StorageItem[]): DiskStorage[] {
  return storage.filter((s): s is DiskStorage => s.type !== "virtfs");
}

function namesOf(disks: readonly { name: string }[]): string {
  return disks.map((d) => d.name).join(", ");
}

/** The message for a raw (or other non-qcow2) drive, which cannot hold snapshots. */
export function rawDriveMessage(drive: string, format = "raw"): string {
  return `drive '${drive}' is ${format}: snapshots need qcow2`;
}

/**
 * Picks the drives of VM `vmName`: the one named `drive` (a storage item's `name`), or every
 * qcow2 drive. Unknown, virtfs and raw drives, and a VM without qcow2 drives, are errors (exit 3).
 */
export function selectDrives(
  vmName: string,
  storage: readonly StorageItem[],
  drive?: string,
): DriveSelection {
  const disks = diskList(storage);
  const known = disks.length === 0 ? "it has no drives" : `its drives: ${namesOf(disks)}`;
  if (drive !== undefined) {
    const item = storage.find((s) => s.name === drive);
    if (!item) throw new NotFoundError(`VM '${vmName}' has no drive '${drive}' (${known})`);
    if (item.type === "virtfs") {
      throw new UsageError(`storage '${drive}' of VM '${vmName}' is a virtfs share, not a drive`);
    }
    if (item.type !== "qcow2") throw new UsageError(rawDriveMessage(drive));
    return { drives: [item], skipped: [] };
  }
  const drives = disks.filter((d) => d.type === "qcow2");
  if (drives.length === 0) {
    throw new UsageError(
      `VM '${vmName}' has no qcow2 drive to snapshot (${known}; snapshots need qcow2)`,
    );
  }
  return { drives, skipped: disks.filter((d) => d.type !== "qcow2") };
}

/**
 * Checks a name for a new snapshot: not empty, at most 128 characters, no spaces or control
 * characters, no leading `-`, and not all digits (qemu-img would take it for a snapshot id).
 */
export function validateSnapshotName(name: string): void {
  const problem = name === ""
    ? "it is empty"
    : name.length > 128
    ? "it is longer than 128 characters"
    : /[\s\p{Cc}]/u.test(name)
    ? "it contains spaces or control characters"
    : name.startsWith("-")
    ? "it starts with '-'"
    : /^\d+$/.test(name)
    ? "it is all digits, which qemu-img takes for a snapshot id"
    : undefined;
  if (problem) throw new UsageError(`invalid snapshot name '${name}': ${problem}`);
}

function num(value: unknown): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

/**
 * The snapshots in an image description: `qemu-img info --output=json` or the `image` of a QMP
 * `query-block` entry (both carry a `snapshots` array with the same keys; absent means none).
 */
export function parseSnapshots(image: unknown): SnapshotInfo[] {
  const list = (image as { snapshots?: unknown } | null)?.snapshots;
  if (!Array.isArray(list)) return [];
  return list.map((s: Record<string, unknown>) => ({
    name: String(s.name ?? ""),
    id: String(s.id ?? ""),
    vmStateSize: num(s["vm-state-size"]),
    dateMs: num(s["date-sec"]) * 1000 + Math.floor(num(s["date-nsec"]) / 1e6),
    vmClockNs: num(s["vm-clock-sec"]) * 1e9 + num(s["vm-clock-nsec"]),
  }));
}

/** One step of a plan: `op` with snapshot `name` on `drives`, `times` times (duplicates). */
export interface SnapshotStep {
  op: SnapshotAction;
  drives: string[];
  /** How often to run it: qemu-img allows duplicate names and deletes one per call. */
  times: number;
}

/**
 * Plans `action` with snapshot `name` given what each drive (in order) already has: `create`
 * refuses a name that exists unless `overwrite` (then deletes it first); `load` and `delete` need
 * it on every drive. Errors name the drive and the snapshot; nothing has run when they are thrown.
 */
export function planSteps(
  action: SnapshotAction,
  name: string,
  options: { existing: ReadonlyMap<string, readonly SnapshotInfo[]>; overwrite?: boolean },
): SnapshotStep[] {
  const drives = [...options.existing.keys()];
  const count = (drive: string) =>
    (options.existing.get(drive) ?? []).filter((s) => s.name === name).length;
  const having = drives.filter((d) => count(d) > 0);
  if (action === "create") {
    const create: SnapshotStep = { op: "create", drives, times: 1 };
    if (having.length === 0) return [create];
    if (!options.overwrite) {
      throw new UsageError(
        `snapshot '${name}' already exists on drive '${having[0]}' (--overwrite replaces it)`,
      );
    }
    const times = Math.max(...having.map(count));
    return [{ op: "delete", drives: having, times }, create];
  }
  const missing = drives.find((d) => count(d) === 0);
  if (missing !== undefined) {
    throw new NotFoundError(`snapshot '${name}' not found on drive '${missing}'`);
  }
  if (action === "load") return [{ op: "load", drives, times: 1 }];
  return [{ op: "delete", drives, times: Math.max(...drives.map(count)) }];
}

/**
 * The drive that holds (for `load`) or will hold (for `create`) the VM state of a live snapshot:
 * for `create` the first drive; for `load` the drive whose snapshot `name` has VM state. A
 * disk-only snapshot (taken offline) cannot be loaded into a running VM: that is an error.
 */
export function vmStateDrive(
  action: "create" | "load",
  name: string,
  existing: ReadonlyMap<string, readonly SnapshotInfo[]>,
): string {
  const drives = [...existing.keys()];
  if (action === "create") return drives[0];
  const holder = drives.find((d) =>
    (existing.get(d) ?? []).some((s) => s.name === name && s.vmStateSize > 0)
  );
  if (holder === undefined) {
    throw new UsageError(
      `snapshot '${name}' on drive${drives.length > 1 ? "s" : ""} ${
        drives.map((d) => `'${d}'`).join(", ")
      } holds no VM state (taken offline?): stop the VM to load it offline`,
    );
  }
  return holder;
}

/** A guest clock in nanoseconds as `HH:MM:SS.mmm`, like `qemu-img snapshot -l`. */
export function formatVmClock(ns: number): string {
  const ms = Math.floor(ns / 1e6);
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor(ms / 60_000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  return `${pad(h)}:${pad(m)}:${pad(s)}.${pad(ms % 1000, 3)}`;
}

/** A date as local `YYYY-MM-DD HH:MM:SS`, like `qemu-img snapshot -l`. */
export function formatDate(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
