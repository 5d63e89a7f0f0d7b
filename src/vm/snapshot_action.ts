/**
 * Creating, loading and deleting snapshots of a VM's qcow2 drives: offline with `qemu-img snapshot` while the VM is stopped, live
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
import { NotRunningError, UsageError } from "../errors.ts";
import { diskFile } from "../config/mod.ts";
import type { DiskStorage } from "../config/mod.ts";
import type { Dirs, VmRecord } from "../state/mod.ts";
import { Deadline, type VmEnv } from "./env.ts";
import { agentSocketOf } from "./agent.ts";
import { type Guarded, withVm } from "./guard.ts";
import { acquireLock, type VmLock } from "./lock.ts";
import { freezeModule } from "./observe.ts";
import { vmPaths } from "../vm_files.ts";
import { storageWithRoot } from "./storage.ts";
import {
  type Quiesce,
  selectDrives,
  type SnapshotOutcome,
  type SnapshotRequest,
  validateSnapshotName,
} from "./_snapshot.ts";
import { liveAction } from "./snapshot_live.ts";
import { offlineAction } from "./snapshot_offline.ts";

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
  selectDrives(vm.name, storageWithRoot(vm, ctx.dirs), request.drive); // fail fast, before any wait
  const timeoutMs = request.timeoutS * 1000;
  const deadline = Deadline.in(timeoutMs);
  return withVm(ctx, vm, { deadline }, async (seen) => {
    const held: VmLock[] = [];
    try {
      return await actLocked(ctx, { seen, request, deadline, held });
    } finally {
      for (const lock of held.reverse()) lock.release();
    }
  });
}

/**
 * The action under the VM's lock: the drives chosen again from the VM as it is now, their image
 * locks taken into `held`, then offline or live (with the guest's file systems quiesced when it
 * has an agent).
 */
async function actLocked(
  ctx: VmEnv,
  work: { seen: Guarded; request: SnapshotRequest; deadline: Deadline; held: VmLock[] },
): Promise<SnapshotOutcome> {
  const { seen, request } = work;
  const vm = seen.vm;
  const { drives, skipped } = selectDrives(vm.name, storageWithRoot(vm, ctx.dirs), request.drive);
  // Frozen: running, with its file systems still frozen (the thaw is retried after the save).
  const live = seen.status === "running" || seen.status === "frozen";
  if (request.live && !live) {
    throw new NotRunningError(
      `VM '${vm.name}' is not running (status: ${seen.status}): --live needs a running VM`,
    );
  }
  await takeLocks(ctx, vm, { drives, timeoutMs: work.deadline.remainingMs(), held: work.held });
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

/** The `--json` shape (stable keys) of a create/load/delete. */
export function outcomeJson(outcome: SnapshotOutcome, name: string): Record<string, unknown> {
  return {
    id: outcome.vm.id,
    vm: outcome.vm.name,
    mode: outcome.mode,
    snapshot: name,
    actions: outcome.done.map((d) => ({ action: d.action, drive: d.drive, vm_state: d.vmState })),
    skipped: outcome.skipped,
    quiesce: outcome.quiesce ?? null,
  };
}
