/**
 * Snapshots of a VM's qcow2 drives: offline with `qemu-img snapshot` while the VM is stopped, live
 * with QMP `snapshot-save` / `snapshot-load` / `snapshot-delete` jobs (QEMU >= 6.0, VM state
 * included) while it runs. Every change runs under the VM's lock and a lock per disk image.
 *
 * The rule that keeps a guest's memory and disks together: a snapshot with VM state (a live
 * create, every live load) covers every writable drive of the running VM or is refused. A
 * disk-only snapshot (offline, or live with `diskOnly`) has no memory to disagree with, so it may
 * cover any set of drives.
 */
import { sha256Hex } from "../sha256.ts";
import { join, resolve } from "../path.ts";
import { Deadline, type VmEnv } from "./env.ts";
import { agentSocketOf } from "./agent.ts";
import { withVm } from "./guard.ts";
import { NotFoundError, NotRunningError, QvmError, TimeoutError, UsageError } from "../errors.ts";
import { sleep } from "../timers.ts";
import { diskFile, storageId } from "../config/mod.ts";
import type { DiskStorage, StorageItem } from "../config/mod.ts";
import { storageWithRoot } from "./storage.ts";
import type { Dirs, VmRecord } from "../state/mod.ts";
import { qemuImg } from "../qemu/img.ts";
import type { QmpClient } from "../qemu/qmp.ts";
import { acquireLock, type VmLock } from "./lock.ts";
import { observe } from "./observe.ts";
import { isOurQemu, markersIn, qemuMessages } from "../qemu/process.ts";
import { vmPaths } from "../vm_files.ts";
import { QMP_TIMEOUT_MS } from "./qmp_session.ts";
import {
  type BlockDevice,
  imgFailure,
  parseBlockDevices,
  parseSnapshots,
  type PartialSnapshot,
  partialSnapshots,
  planSteps,
  rawDriveMessage,
  selectDrives,
  type SnapshotAction,
  type SnapshotInfo,
  type SnapshotStep,
  validateSnapshotName,
  vmStateDrive,
  vmStateDrives,
} from "./_snapshot.ts";
import { qmpModule } from "../qemu/lazy.ts";
import { freezeModule } from "./observe.ts";
import { withSignalsHeld } from "../signals.ts";

export type { PartialSnapshot, SnapshotAction, SnapshotInfo } from "./_snapshot.ts";
export { formatDate, formatVmClock } from "./_snapshot.ts";

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
 * The lock file of the disk image at `file`, shared by every VM that uses that image: named from
 * a hash of its real path (the file itself if it exists), in a folder of the runtime dir.
 */
export function diskLockPath(dirs: Dirs, file: string): string {
  let real = resolve(file);
  try {
    real = Deno.realPathSync(file);
  } catch { /* not there yet: its absolute path */ }
  const hash = sha256Hex(real).slice(0, 24);
  return join(dirs.runtimeDir, "disk-locks", `${hash}.lock`);
}

function onDrive(drive: string, err: unknown): unknown {
  if (!(err instanceof QvmError) || err instanceof UsageError || err instanceof NotFoundError) {
    return err;
  }
  // qemu-img's last stderr line may be a hint; the error line says what went wrong.
  const failure = imgFailure(err.detail ?? "") ?? err.message;
  const wrapped = new QvmError(`drive '${drive}': ${failure}`, {
    detail: err.detail,
    cause: err,
  });
  wrapped.exitCode = err.exitCode;
  return wrapped;
}

/** The snapshots of a stopped VM's drive, read with `qemu-img info` (`share`: with -U). */
async function imageSnapshots(
  drive: DiskStorage,
  file: string,
  options: { share: boolean },
): Promise<SnapshotInfo[]> {
  try {
    Deno.statSync(file);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    throw new NotFoundError(
      `drive '${drive.name}' has no image yet at ${file} (qvm start creates it)`,
    );
  }
  let info;
  try {
    info = JSON.parse(
      await qemuImg(["info", ...(options.share ? ["-U"] : []), "--output=json", file]),
    );
  } catch (err) {
    throw onDrive(drive.name, err);
  }
  if (info.format !== "qcow2") throw new UsageError(rawDriveMessage(drive.name, info.format));
  return parseSnapshots(info);
}

/** A qcow2 drive as the running QEMU has it: its format node and its snapshots. */
interface AttachedDrive {
  node: string;
  snapshots: SnapshotInfo[];
}

/**
 * Finds each drive (a storage item's name) among the running VM's block devices: qvm attaches
 * drives with `-drive id=<name>`, so `query-block` lists them under device `<name>`.
 */
function attachedDrives(
  devices: readonly BlockDevice[],
  drives: readonly string[],
): Map<string, AttachedDrive> {
  const found = new Map<string, AttachedDrive>();
  for (const drive of drives) {
    const device = devices.find((d) => d.device === drive);
    if (!device) {
      throw new QvmError(
        `drive '${drive}' is not attached to the running VM (added to its config after start?)`,
      );
    }
    if (device.format !== "qcow2") throw new UsageError(rawDriveMessage(drive, device.format));
    found.set(drive, { node: device.node, snapshots: device.snapshots });
  }
  return found;
}

/**
 * The running VM's block devices that have a medium, from QMP `query-block`; a drive of the
 * storage list is named by its storage name (QEMU knows it by its id, see `storageId`).
 */
async function blockDevices(
  client: QmpClient,
  storage: readonly StorageItem[],
): Promise<BlockDevice[]> {
  const names = new Map(storage.map((item) => [storageId(item.name), item.name]));
  return parseBlockDevices(await client.execute("query-block")).map((device) => ({
    ...device,
    device: names.get(device.device) ?? device.device,
  }));
}

async function connectQmp(ctx: VmEnv, vm: VmRecord): Promise<QmpClient> {
  const { QmpClient } = await qmpModule();
  return await QmpClient.connect(vmPaths(ctx.dirs, vm.id).qmpSocket, {
    timeoutMs: QMP_TIMEOUT_MS,
  });
}

/**
 * The drives a snapshot may cover: the config's storage, and first the root overlay of a VM made
 * from an `image:` (QEMU drive `qvm-root`, a qcow2 in the VM's disk folder).
 */
function snapshotStorage(env: VmEnv, vm: VmRecord): StorageItem[] {
  return storageWithRoot(vm, env.dirs);
}

const JOB_COMMANDS: Readonly<Record<SnapshotAction, string>> = {
  create: "snapshot-save",
  load: "snapshot-load",
  delete: "snapshot-delete",
};

/** Bytes in `file` (0 if missing), to read what QEMU logs from there on. */
function fileSize(file: string): number {
  try {
    return Deno.statSync(file).size;
  } catch {
    return 0;
  }
}

/** What QEMU wrote to its log after byte `offset`, trimmed ("" if nothing or unreadable). */
function logSince(file: string, offset: number): string {
  try {
    const bytes = Deno.readFileSync(file);
    return qemuMessages(new TextDecoder().decode(bytes.subarray(Math.min(offset, bytes.length))))
      .trim();
  } catch {
    return "";
  }
}

/** A snapshot job that QEMU ran and that ended in an error (QEMU's words in the message). */
class JobFailure extends QvmError {
  override name = "JobFailure";
}

interface JobInfo {
  id: string;
  status: string;
  error?: string;
  "current-progress"?: number;
  "total-progress"?: number;
}

/** Reports job `jobId`'s progress from `query-jobs` every 200 ms until `done()` says stop. */
async function watchJob(
  client: QmpClient,
  job: { id: string; op: SnapshotAction; done: () => boolean },
  onJob: (job: SnapshotJobProgress) => void,
): Promise<void> {
  while (!job.done()) {
    try {
      const info = (await client.execute<JobInfo[]>("query-jobs")).find((j) => j.id === job.id);
      if (info && !job.done()) {
        const total = info["total-progress"] ?? 0;
        const percent = total > 0 ? Math.floor(100 * (info["current-progress"] ?? 0) / total) : 0;
        onJob({ op: job.op, status: info.status, percent });
      }
    } catch {
      return; // progress is not worth failing the job for
    }
    await sleep(200);
  }
}

/**
 * Runs one snapshot job and waits until it concludes (JOB_STATUS_CHANGE), then reads its
 * `error` from `query-jobs` and dismisses it. A job error is a QvmError with QEMU's words; what
 * QEMU logged meanwhile (often the real reason, e.g. a RAM size mismatch) becomes its detail.
 */
async function runJob(
  client: QmpClient,
  op: SnapshotAction,
  options: {
    args: Record<string, unknown>;
    timeoutMs: number;
    qemuLog: string;
    onJob?: (job: SnapshotJobProgress) => void;
  },
): Promise<void> {
  const command = JOB_COMMANDS[op];
  const logOffset = fileSize(options.qemuLog);
  const jobId = `qvm-${op}-${crypto.randomUUID().slice(0, 8)}`;
  const since = client.events.length;
  try {
    await client.execute(command, { "job-id": jobId, ...options.args });
  } catch (err) {
    if ((err as { qmpClass?: string }).qmpClass === "CommandNotFound") {
      throw new QvmError(
        `live snapshots need QEMU 6.0 or newer (no QMP ${command}); stop the VM to snapshot offline`,
      );
    }
    throw err;
  }
  let concluded = false;
  const watching = options.onJob
    ? watchJob(client, { id: jobId, op, done: () => concluded }, options.onJob)
    : undefined;
  try {
    await client.waitForEvent("JOB_STATUS_CHANGE", {
      since,
      timeoutMs: options.timeoutMs,
      match: (e) => e.data?.id === jobId && e.data?.status === "concluded",
    });
  } catch (err) {
    if (!(err instanceof TimeoutError)) throw err;
    throw new TimeoutError(
      `${command} job '${jobId}' still running after ${Math.round(options.timeoutMs / 1000)} s ` +
        `(QEMU carries on with it; see 'query-jobs')`,
    );
  } finally {
    concluded = true;
    await watching;
  }
  const jobs = await client.execute<JobInfo[]>("query-jobs");
  await client.execute("job-dismiss", { id: jobId });
  const error = jobs.find((j) => j.id === jobId)?.error;
  if (error !== undefined) {
    const detail = logSince(options.qemuLog, logOffset);
    throw new JobFailure(`${command} failed: ${error}`, { detail: detail || undefined });
  }
}

async function qemuStatus(client: QmpClient): Promise<string> {
  return (await client.execute<{ status: string }>("query-status")).status;
}

/**
 * Takes a disk-only snapshot of a running VM's drives (no VM state): one QMP `transaction` of
 * `blockdev-snapshot-internal-sync`, so every drive is snapshotted at the same point or none is.
 */
async function diskOnlySnapshot(
  client: QmpClient,
  options: { name: string; nodes: string[] },
): Promise<void> {
  try {
    await client.execute("transaction", {
      actions: options.nodes.map((node) => ({
        type: "blockdev-snapshot-internal-sync",
        data: { device: node, name: options.name },
      })),
    });
  } catch (err) {
    if ((err as { qmpClass?: string } | undefined)?.qmpClass === undefined) throw err;
    throw new JobFailure(`blockdev-snapshot-internal-sync failed: ${(err as Error).message}`);
  }
}

/** True once VM `vm`'s QEMU is gone, polled for up to `waitMs`. */
async function qemuGone(env: VmEnv, vm: VmRecord, waitMs: number): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  while (isOurQemu(vm.pid, markersIn(env.dirs.runtimeDir, vm))) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

/**
 * The error to report when a live step failed. If QEMU is gone, that is what happened (whatever
 * QMP error the step saw); the VM is recorded as stopped. If a load job failed, QEMU has rolled
 * the drives back but not the memory: the guest must not run on, so the way out is a reset, a
 * stop or another snapshot.
 */
async function liveFailure(
  ctx: VmEnv,
  vm: VmRecord,
  options: { err: unknown; op: SnapshotAction; name: string; logOffset: number },
): Promise<unknown> {
  const { err, op, name } = options;
  const qemuLog = vmPaths(ctx.dirs, vm.id).qemuLog;
  // QEMU's own answers (and qvm's refusals) come from a live QEMU; a lost connection may mean
  // it is exiting: its monitor can close a moment before the process is gone.
  const answered = err instanceof JobFailure ||
    (err as { qmpClass?: string } | undefined)?.qmpClass !== undefined ||
    err instanceof UsageError || err instanceof NotFoundError || err instanceof TimeoutError;
  if (await qemuGone(ctx, vm, answered ? 0 : 2000)) {
    const seen = await observe(ctx, ctx.store.require(vm.id), { qmp: false, locked: true });
    const how = seen.vm.stopReason ? ` (${seen.vm.stopReason})` : "";
    const after: Record<SnapshotAction, string> = {
      load: `its drives may be partly rolled back to '${name}': load '${name}' offline ` +
        `('qvm snapshot load ${vm.name} ${name}') to put every drive back to it, or start it ` +
        "as it is",
      create: `snapshot '${name}' may be left on some drives ('qvm snapshot list ${vm.name}')`,
      delete: `snapshot '${name}' may be left on some drives ('qvm snapshot list ${vm.name}')`,
    };
    const lines = [logSince(qemuLog, options.logOffset), `qvm saw: ${(err as Error).message}`];
    return new QvmError(
      `QEMU exited during ${JOB_COMMANDS[op]} of snapshot '${name}'${how}: the VM is stopped; ` +
        after[op],
      { detail: lines.filter((l) => l !== "").join("\n"), cause: err },
    );
  }
  if (op === "load" && err instanceof JobFailure) {
    err.message += `; the drives of VM '${vm.name}' were rolled back to '${name}' but its ` +
      "memory was not, so the guest must not run on as it is: reset it " +
      `('qvm qmp run ${vm.name} system_reset'), stop it ('qvm stop ${vm.name}'), or load ` +
      `another snapshot ('qvm snapshot load ${vm.name} OTHER')`;
  }
  return err;
}

async function liveAction(
  ctx: VmEnv,
  vm: VmRecord,
  options: { request: SnapshotRequest; drives: DiskStorage[] },
): Promise<SnapshotDone[]> {
  const { request } = options;
  const qemuLog = vmPaths(ctx.dirs, vm.id).qemuLog;
  const logOffset = fileSize(qemuLog);
  const client = await connectQmp(ctx, vm);
  let op: SnapshotAction = request.action;
  try {
    const devices = await blockDevices(client, snapshotStorage(ctx, vm));
    // A live load always brings back VM state; a live create does unless --disk-only.
    const withState = request.action === "load" ||
      (request.action === "create" && request.diskOnly !== true);
    const names = withState
      ? vmStateDrives(vm.name, {
        action: request.action as "create" | "load",
        storage: snapshotStorage(ctx, vm),
        devices,
        drive: request.drive,
      })
      : options.drives.map((d) => d.name);
    // After a failed load the memory does not match the drives: saving it would keep that split.
    if (withState && request.action === "create" && (await qemuStatus(client)) === "restore-vm") {
      throw new UsageError(
        `VM '${vm.name}' is held stopped after a failed snapshot load: its memory does not ` +
          "match its drives, so a snapshot with VM state would keep that; reset it, stop it, " +
          "or load another snapshot first (or take a disk-only snapshot with --disk-only)",
      );
    }
    const attached = attachedDrives(devices, names);
    const existing = new Map([...attached].map(([name, a]) => [name, a.snapshots]));
    const steps = planSteps(request.action, request.name, {
      existing,
      overwrite: request.overwrite,
    });
    const stateDrive = withState
      ? vmStateDrive(request.action as "create" | "load", request.name, existing)
      : undefined;
    const done: SnapshotDone[] = [];
    for (const step of steps) {
      op = step.op;
      const nodes = step.drives.map((d) => attached.get(d)!.node);
      for (let i = 0; i < step.times; i++) {
        if (step.op === "create" && !withState) {
          await diskOnlySnapshot(client, { name: request.name, nodes });
          continue;
        }
        const args: Record<string, unknown> = { tag: request.name, devices: nodes };
        if (step.op !== "delete") args.vmstate = attached.get(stateDrive!)!.node;
        await runJob(client, step.op, {
          args,
          timeoutMs: request.timeoutS * 1000,
          qemuLog,
          onJob: request.onJob,
        });
      }
      for (const drive of step.drives) {
        done.push({
          action: step.op,
          drive,
          vmState: step.op !== "delete" && drive === stateDrive,
        });
      }
    }
    // QEMU resumes a guest after a load only if it was running; one left stopped by a failed
    // load ("restore-vm") now has memory and drives that match again, so it runs on.
    if (request.action === "load" && (await qemuStatus(client)) === "restore-vm") {
      await client.execute("cont");
    }
    return done;
  } catch (err) {
    throw await liveFailure(ctx, vm, { err, op, name: request.name, logOffset });
  } finally {
    client.close();
    await client.closed;
  }
}

const IMG_FLAGS: Readonly<Record<SnapshotAction, string>> = {
  create: "-c",
  load: "-a",
  delete: "-d",
};

async function offlineAction(
  ctx: VmEnv,
  vm: VmRecord,
  options: { request: SnapshotRequest; drives: DiskStorage[] },
): Promise<SnapshotDone[]> {
  const { request, drives } = options;
  const diskDir = vmPaths(ctx.dirs, vm.id).diskDir;
  const files = new Map(drives.map((d) => [d.name, diskFile(d, diskDir)]));
  const existing = new Map<string, SnapshotInfo[]>();
  // Without -U: a QEMU (of another VM) holding the image fails here, before anything changes.
  for (const drive of drives) {
    existing.set(drive.name, await imageSnapshots(drive, files.get(drive.name)!, { share: false }));
  }
  const steps: SnapshotStep[] = planSteps(request.action, request.name, {
    existing,
    overwrite: request.overwrite,
  });
  const undone = request.action === "create"
    ? `snapshot '${request.name}' was taken off the drives it had reached`
    : `the ${request.action} of snapshot '${request.name}' may have reached only some drives ` +
      `('qvm snapshot list ${vm.name}')`;
  // Ctrl-C or SIGTERM between drives would leave a snapshot on some drives only: a create stops
  // and deletes what it made; a load or a delete (quick, and worse left half done) runs to its end.
  return await withSignalsHeld(undone, async (signal) => {
    const done: SnapshotDone[] = [];
    try {
      for (const step of steps) {
        for (const drive of step.drives) {
          for (let i = 0; i < step.times; i++) {
            // Only as many deletes as this drive has copies (duplicates come from outside qvm).
            const copies = existing.get(drive)!.filter((s) => s.name === request.name).length;
            if (step.op === "delete" && i >= copies) break;
            if (request.action === "create") signal.throwIfAborted();
            try {
              await qemuImg(["snapshot", IMG_FLAGS[step.op], request.name, files.get(drive)!]);
            } catch (err) {
              throw onDrive(drive, err);
            }
          }
          done.push({ action: step.op, drive, vmState: false });
        }
      }
      return done;
    } catch (err) {
      if (signal.aborted && request.action === "create") {
        await undoCreate({ name: request.name, drives, files, existing });
      }
      throw err;
    }
  });
}

/**
 * Deletes what an interrupted offline create made: on each drive, the copies of snapshot `name`
 * beyond those it had before (an overwrite's deletes cannot be undone).
 */
async function undoCreate(
  made: {
    name: string;
    drives: DiskStorage[];
    files: Map<string, string>;
    existing: Map<string, SnapshotInfo[]>;
  },
): Promise<void> {
  for (const drive of made.drives) {
    const file = made.files.get(drive.name)!;
    try {
      const now = await imageSnapshots(drive, file, { share: false });
      const before = made.existing.get(drive.name)!.filter((s) => s.name === made.name).length;
      const extra = now.filter((s) => s.name === made.name).length - before;
      for (let i = 0; i < extra; i++) await qemuImg(["snapshot", "-d", made.name, file]);
    } catch { /* what is left shows in 'snapshot list' as partial */ }
  }
}

async function takeLocks(
  ctx: VmEnv,
  vm: VmRecord,
  options: { drives: DiskStorage[]; timeoutMs: number; held: VmLock[] },
): Promise<void> {
  const diskDir = vmPaths(ctx.dirs, vm.id).diskDir;
  const byLock = new Map<string, string>();
  for (const drive of options.drives) {
    const file = diskFile(drive, diskDir);
    byLock.set(diskLockPath(ctx.dirs, file), file);
  }
  for (const [path, file] of [...byLock].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
    options.held.push(
      await acquireLock(path, { timeoutMs: options.timeoutMs, what: `disk image ${file}` }),
    );
  }
}

/**
 * Creates, loads or deletes snapshot `request.name` on the VM's qcow2 drives: live (QMP jobs) if
 * its QEMU runs, offline (qemu-img) if not; `request.live` demands live. Errors before any change
 * when a snapshot to load/delete is missing or one to create exists (without `overwrite`), when a
 * snapshot with VM state would leave out a writable drive (see `vmStateDrives`), or when a name is
 * longer than QEMU keeps. A failed live load leaves the drives rolled back under memory that was
 * not: the error says so and names the ways out; a QEMU that died meanwhile is reported as such.
 *
 * Locks: the VM's own lock is the one `start` holds while it creates disks and launches QEMU, so
 * an offline snapshot and a start of this VM exclude each other, and `stop` waits for a live job.
 * An image can be shared by several VMs (configs with the same `file:`), whose VM locks do not
 * exclude each other, so each image also gets its own lock (named from a hash of its real path),
 * taken after the VM lock in sorted order so two VMs sharing two images cannot deadlock. A start
 * of the other VM takes no image lock, but QEMU's image locking covers that: qemu-img then fails
 * with "Failed to get write lock" rather than writing under a running QEMU.
 */
export function snapshotVm(
  ctx: VmEnv,
  vm: VmRecord,
  request: SnapshotRequest,
): Promise<SnapshotOutcome> {
  validateSnapshotName(request.name, request.action);
  if (request.diskOnly && request.action !== "create") {
    throw new UsageError(`--disk-only is for 'snapshot create' (not ${request.action})`);
  }
  selectDrives(vm.name, snapshotStorage(ctx, vm), request.drive); // fail fast, before any wait
  const timeoutMs = request.timeoutS * 1000;
  const deadline = Deadline.in(timeoutMs);
  return withVm(ctx, vm, { deadline }, async (seen) => {
    const held: VmLock[] = [];
    try {
      vm = seen.vm;
      const { drives, skipped } = selectDrives(vm.name, snapshotStorage(ctx, vm), request.drive);
      // Frozen: running, with its file systems still frozen (the thaw is retried after the save).
      const live = seen.status === "running" || seen.status === "frozen";
      if (request.live && !live) {
        throw new NotRunningError(
          `VM '${vm.name}' is not running (status: ${seen.status}): --live needs a running VM`,
        );
      }
      await takeLocks(ctx, vm, { drives, timeoutMs: deadline.remainingMs(), held });
      const outcome = { vm, skipped: skipped.map((d) => d.name) };
      if (!live) {
        const done = await offlineAction(ctx, vm, { request, drives });
        return { ...outcome, mode: "offline", done };
      }
      const agent = agentSocketOf(ctx, vm);
      if (agent === undefined || request.action === "delete") {
        return { ...outcome, mode: "live", done: await liveAction(ctx, vm, { request, drives }) };
      }
      const quiesced = await withQuiescedGuest(
        ctx,
        { vm, socket: agent, action: request.action },
        () => liveAction(ctx, vm, { request, drives }),
      );
      return { ...outcome, mode: "live", done: quiesced.value, quiesce: quiesced.quiesce };
    } finally {
      for (const lock of held.reverse()) lock.release();
    }
  });
}

/**
 * Runs a live create with the guest's file systems frozen by its agent (so the disks hold
 * consistent file systems), or a live load followed by a thaw, as the restored guest may have been
 * saved frozen. An agent that does not answer never fails the snapshot: `reason` says what was
 * not done. Whatever ends qvm but SIGKILL thaws the guest; after SIGKILL the next command does.
 */
async function withQuiescedGuest<T>(
  env: VmEnv,
  target: { vm: VmRecord; socket: string; action: "create" | "load" },
  work: () => Promise<T>,
): Promise<{ value: T; quiesce: Quiesce }> {
  const { withFrozenGuest } = await freezeModule();
  const { vm, socket, action } = target;
  const done = await withFrozenGuest(env, { vm, socket, freeze: action === "create" }, work);
  const thawed = action === "load" && done.thawed > 0;
  return { value: done.value, quiesce: { frozen: done.frozen, thawed, reason: done.reason } };
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
  const { drives } = selectDrives(vm.name, snapshotStorage(ctx, vm), options.drive);
  const seen = await observe(ctx, vm, { qmp: false });
  vm = seen.vm;
  const diskDir = vmPaths(ctx.dirs, vm.id).diskDir;
  if (seen.status === "running" || seen.status === "frozen") {
    const client = await connectQmp(ctx, vm);
    try {
      const attached = attachedDrives(
        await blockDevices(client, snapshotStorage(ctx, vm)),
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
