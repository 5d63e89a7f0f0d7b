/**
 * The pure core of `qvm snapshot`: which drives an operation touches, what a snapshot name may be,
 * reading snapshot tables (qemu-img info JSON and QMP `query-block` share one shape), and planning
 * the steps of an action from the snapshots that already exist, and the shapes of a request and
 * its outcome. No I/O here.
 */
import { NotFoundError, UsageError } from "../errors.ts";
import type { DiskStorage, StorageItem } from "../config/mod.ts";
import type { VmRecord } from "../state/mod.ts";

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

/** The longest snapshot name QEMU keeps, in UTF-8 bytes (qemu-img and snapshot-save cut the rest). */
export const MAX_SNAPSHOT_NAME_BYTES = 255;

/** The problem with the length or encoding of a snapshot name, if any. */
function nameSizeProblem(name: string): string | undefined {
  if (!name.isWellFormed()) return "it is not valid Unicode (a lone surrogate)";
  const bytes = new TextEncoder().encode(name).length;
  if (bytes <= MAX_SNAPSHOT_NAME_BYTES) return undefined;
  return `it is ${bytes} bytes in UTF-8 and QEMU keeps at most ${MAX_SNAPSHOT_NAME_BYTES} ` +
    "(it would cut the name)";
}

/**
 * Checks a snapshot name. Every action: valid Unicode and at most 255 UTF-8 bytes, the most QEMU
 * keeps (a longer name would be cut and then never found by the name given). `create` also: not
 * empty, no spaces or control characters, no leading `-`, not all digits (qemu-img would take it
 * for a snapshot id).
 */
export function validateSnapshotName(name: string, action: SnapshotAction = "create"): void {
  const problem = nameSizeProblem(name) ??
    (action !== "create"
      ? undefined
      : name === ""
      ? "it is empty"
      : /[\s\p{Cc}]/u.test(name)
      ? "it contains spaces or control characters"
      : name.startsWith("-")
      ? "it starts with '-'"
      : /^\d+$/.test(name)
      ? "it is all digits, which qemu-img takes for a snapshot id"
      : undefined);
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

/** A block device of the running QEMU with a medium in it (one entry of QMP `query-block`). */
export interface BlockDevice {
  /** The drive's id (`-drive id=`; qvm uses the storage item's name), else its qdev path. */
  device: string;
  /** Its format node, which snapshot jobs name. */
  node: string;
  /** The format driver (`qcow2`, `raw`, ...). */
  format: string;
  readOnly: boolean;
  snapshots: SnapshotInfo[];
}

/** The block devices in a QMP `query-block` reply that have a medium (empty cdroms are left out). */
export function parseBlockDevices(blocks: unknown): BlockDevice[] {
  if (!Array.isArray(blocks)) return [];
  const devices: BlockDevice[] = [];
  for (const block of blocks) {
    const inserted = block?.inserted;
    if (!inserted) continue;
    devices.push({
      device: String(block.device || block.qdev || inserted["node-name"] || "?"),
      node: String(inserted["node-name"] ?? ""),
      format: String(inserted.drv ?? ""),
      readOnly: inserted.ro === true,
      snapshots: parseSnapshots(inserted.image),
    });
  }
  return devices;
}

function quoted(names: readonly string[]): string {
  return names.map((n) => `'${n}'`).join(", ");
}

function drivesWord(names: readonly string[]): string {
  return names.length > 1 ? `drives ${quoted(names)} are` : `drive ${quoted(names)} is`;
}

/**
 * The drives a snapshot with VM state uses on a running VM: every writable drive, because loading
 * it puts back the guest's memory, and a drive left out would keep newer data under older memory
 * (a split the guest cannot survive). So a writable raw drive, a writable drive outside the VM's
 * storage list, or a `drive` that leaves another writable drive out is refused, with the way out.
 * Read-only drives and cdroms do not count; virtfs shares are no block devices. Returns the
 * storage names in storage order; throws UsageError (exit 3) before anything has run.
 */
export function vmStateDrives(
  vmName: string,
  options: {
    action: "create" | "load";
    storage: readonly StorageItem[];
    devices: readonly BlockDevice[];
    drive?: string;
  },
): string[] {
  const { action, devices, drive } = options;
  const disks = diskList(options.storage);
  const writable = devices.filter((d) => !d.readOnly);
  const rule = action === "create"
    ? "a snapshot with VM state must include every writable drive, or loading it would put " +
      "the guest's memory back over newer data on the others"
    : "a load with VM state must roll back every writable drive with the memory, or the guest " +
      "would find newer data on the others under older memory";
  const otherwise = action === "create"
    ? "take a disk-only snapshot (no VM state) with --disk-only"
    : "stop the VM and load the snapshot offline (disks only)";
  if (drive !== undefined) {
    const left = writable.filter((d) => d.device !== drive).map((d) => d.device);
    if (left.length > 0) {
      const what = `${left.length > 1 ? "drives" : "drive"} ${quoted(left)}`;
      throw new UsageError(
        `--drive ${drive} leaves out writable ${what} of VM '${vmName}': ${rule}; ` +
          `leave out --drive, or ${
            action === "create"
              ? `take a disk-only snapshot of '${drive}' with --disk-only`
              : otherwise
          }`,
      );
    }
    return [drive];
  }
  const known = new Set(disks.map((d) => d.name));
  const foreign = writable.filter((d) => !known.has(d.device)).map((d) => d.device);
  if (foreign.length > 0) {
    throw new UsageError(
      `${drivesWord(foreign)} writable but not in the storage list of VM '${vmName}': ${rule}; ` +
        `make ${foreign.length > 1 ? "them" : "it"} read-only, or ${otherwise}`,
    );
  }
  const raw = writable.filter((d) => d.format !== "qcow2");
  if (raw.length > 0) {
    const formats = [...new Set(raw.map((d) => d.format))].join("/");
    throw new UsageError(
      `${drivesWord(raw.map((d) => d.device))} writable and ${formats}, which cannot hold ` +
        `snapshots: ${rule}; make ${raw.length > 1 ? "them" : "it"} read-only, convert ` +
        `${raw.length > 1 ? "them" : "it"} to qcow2, or ${otherwise}`,
    );
  }
  const readOnly = new Set(devices.filter((d) => d.readOnly).map((d) => d.device));
  const drives = disks.filter((d) => d.type === "qcow2" && !readOnly.has(d.name)).map((d) =>
    d.name
  );
  if (drives.length === 0) {
    throw new UsageError(
      `VM '${vmName}' has no writable qcow2 drive to hold the VM state (snapshots need qcow2)`,
    );
  }
  return drives;
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
 * for `create` the first drive; for `load` the drive whose snapshot `name` has VM state. A load is
 * refused (UsageError) when no drive's snapshot has VM state (a disk-only snapshot cannot be
 * loaded into a running VM), or when another drive's snapshot of that name was not taken with
 * that VM state (its date and guest clock differ): it would put a disk under memory it was never
 * with. QEMU uses the first snapshot of a name on each drive, and so does this.
 */
export function vmStateDrive(
  action: "create" | "load",
  name: string,
  existing: ReadonlyMap<string, readonly SnapshotInfo[]>,
): string {
  const drives = [...existing.keys()];
  if (action === "create") return drives[0];
  const first = (d: string) => (existing.get(d) ?? []).find((s) => s.name === name);
  const holder = drives.find((d) => (first(d)?.vmStateSize ?? 0) > 0);
  if (holder === undefined) {
    throw new UsageError(
      `snapshot '${name}' on drive${drives.length > 1 ? "s" : ""} ${
        quoted(drives)
      } holds no VM state (a disk-only snapshot): stop the VM to load it offline`,
    );
  }
  const state = first(holder)!;
  const apart = drives.find((d) => {
    const s = first(d);
    return s !== undefined && (s.dateMs !== state.dateMs || s.vmClockNs !== state.vmClockNs);
  });
  if (apart !== undefined) {
    throw new UsageError(
      `snapshot '${name}' on drive '${apart}' was not taken together with its VM state on ` +
        `drive '${holder}': loading it would put that disk under memory it was never with; ` +
        "stop the VM to load the drives offline (disks only), or delete and retake the snapshot",
    );
  }
  return holder;
}

/**
 * What went wrong, from qemu-img's stderr: its last error line (`qemu-img: ...`), not a hint after
 * it such as "Is another process using the image [...]?". A lock failure says who may hold the
 * image. Undefined when stderr has no error line.
 */
export function imgFailure(stderr: string): string | undefined {
  const lines = stderr.split("\n").map((l) => l.trim()).filter((l) => l.startsWith("qemu-img: "));
  const line = lines.at(-1)?.slice("qemu-img: ".length);
  if (line === undefined || line === "") return undefined;
  if (/Failed to get .*lock/.test(line)) {
    return `${line} (another process, such as a running QEMU, is using the image)`;
  }
  return line;
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

/** A snapshot that some of a VM's qcow2 drives hold and others do not (an interrupted action). */
export interface PartialSnapshot {
  name: string;
  /** The drives holding it. */
  on: string[];
  /** The drives without it. */
  missing: string[];
}

/**
 * The snapshots present on only some of `drives` (each drive's snapshot names), in the order
 * first seen: what an interrupted create or delete leaves. Empty for a single drive.
 */
export function partialSnapshots(
  drives: readonly { drive: string; snapshots: readonly { name: string }[] }[],
): PartialSnapshot[] {
  if (drives.length < 2) return [];
  const names = [...new Set(drives.flatMap((d) => d.snapshots.map((s) => s.name)))];
  return names.flatMap((name) => {
    const holds = (d: { snapshots: readonly { name: string }[] }) =>
      d.snapshots.some((s) => s.name === name);
    const on = drives.filter(holds).map((d) => d.drive);
    const missing = drives.filter((d) => !holds(d)).map((d) => d.drive);
    return missing.length === 0 ? [] : [{ name, on, missing }];
  });
}

/** Whether an operation went through qemu-img (VM stopped) or QMP jobs (VM running). */
export type SnapshotMode = "offline" | "live";

/** What `snapshot create|load|delete` was asked to do. */
export interface SnapshotRequest {
  action: SnapshotAction;
  name: string;
  /** A storage item's name; all qcow2 drives when absent. */
  drive?: string;
  /** Require the live path (a running VM). */
  live?: boolean;
  /** `create`: replace a snapshot of the same name. */
  overwrite?: boolean;
  /**
   * `create` on a running VM: snapshot the drives only, without VM state, so that it need not
   * cover every writable drive. Offline snapshots are disk-only whatever this says.
   */
  diskOnly?: boolean;
  /** Bound on each lock wait and each live job. */
  timeoutS: number;
  /** Hears a live job's state while it runs (QEMU's `current-progress` of `total-progress`). */
  onJob?: (job: SnapshotJobProgress) => void;
}

/** A live snapshot job as it runs, for a caller that shows progress. */
export interface SnapshotJobProgress {
  op: SnapshotAction;
  /** QEMU's job status, e.g. `running`. */
  status: string;
  /** Percent done as QEMU counts it (QEMU 7.2 reports only 0 or 100). */
  percent: number;
}

/** One action done on one drive. */
export interface SnapshotDone {
  action: SnapshotAction;
  drive: string;
  /** The drive holds (or held) the VM state of this live snapshot. */
  vmState: boolean;
}

/** What a `create|load|delete` did. */
export interface SnapshotOutcome {
  vm: VmRecord;
  mode: SnapshotMode;
  done: SnapshotDone[];
  /** Raw drives passed over (no `--drive` given). */
  skipped: string[];
  /** What the guest agent did for the guest's file systems; absent when the VM has no agent. */
  quiesce?: Quiesce;
}

/** A live snapshot's use of the guest agent: file systems frozen around a save, thawed after a load. */
export interface Quiesce {
  /** File systems frozen around the save (0 if not frozen). */
  frozen: number;
  /** After a load: the restored guest was frozen (saved so) and has been thawed. */
  thawed: boolean;
  /** Why nothing was frozen or thawed, when the agent could not. */
  reason?: string;
}
