/**
 * Live snapshots of a running VM: its drives found among QEMU's block devices, the steps run as
 * QMP jobs (VM state included unless disk-only), and a failure reported for what it left behind.
 */
import { NotFoundError, QvmError, TimeoutError, UsageError } from "../errors.ts";
import { sleep } from "../timers.ts";
import { storageId } from "../config/mod.ts";
import type { DiskStorage, StorageItem } from "../config/mod.ts";
import type { VmRecord } from "../state/mod.ts";
import type { QmpClient } from "../qemu/qmp.ts";
import { qmpModule } from "../qemu/lazy.ts";
import { isOurQemu, markersIn } from "../qemu/process.ts";
import type { VmEnv } from "./env.ts";
import { observe } from "./observe.ts";
import { vmPaths } from "../vm_files.ts";
import { QMP_TIMEOUT_MS } from "./qmp_session.ts";
import { storageWithRoot } from "./storage.ts";
import {
  type BlockDevice,
  parseBlockDevices,
  planSteps,
  rawDriveMessage,
  type SnapshotAction,
  type SnapshotDone,
  type SnapshotInfo,
  type SnapshotRequest,
  type SnapshotStep,
  vmStateDrive,
  vmStateDrives,
} from "./_snapshot.ts";
import {
  diskOnlySnapshot,
  fileSize,
  JOB_COMMANDS,
  JobFailure,
  logSince,
  runJob,
} from "./snapshot_jobs.ts";

/** A qcow2 drive as the running QEMU has it: its format node and its snapshots. */
export interface AttachedDrive {
  node: string;
  snapshots: SnapshotInfo[];
}

/**
 * Finds each drive (a storage item's name) among the running VM's block devices: qvm attaches
 * drives with `-drive id=<name>`, so `query-block` lists them under device `<name>`.
 */
export function attachedDrives(
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
export async function blockDevices(
  client: QmpClient,
  storage: readonly StorageItem[],
): Promise<BlockDevice[]> {
  const names = new Map(storage.map((item) => [storageId(item.name), item.name]));
  return parseBlockDevices(await client.execute("query-block")).map((device) => ({
    ...device,
    device: names.get(device.device) ?? device.device,
  }));
}

/** A QMP client on the VM's command socket. */
export async function connectQmp(ctx: VmEnv, vm: VmRecord): Promise<QmpClient> {
  const { QmpClient } = await qmpModule();
  return await QmpClient.connect(vmPaths(ctx.dirs, vm.id).qmpSocket, {
    timeoutMs: QMP_TIMEOUT_MS,
  });
}

async function qemuStatus(client: QmpClient): Promise<string> {
  return (await client.execute<{ status: string }>("query-status")).status;
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

/** What a live action will do: the drives as QEMU has them, the steps, and the VM-state drive. */
interface LivePlan {
  attached: Map<string, AttachedDrive>;
  steps: SnapshotStep[];
  withState: boolean;
  stateDrive?: string;
}

/**
 * Plans a live action from what the running QEMU has: a load always brings back VM state, a
 * create does unless disk-only, and then it must cover every writable drive (`vmStateDrives`).
 */
async function planLive(
  client: QmpClient,
  target: { env: VmEnv; vm: VmRecord; request: SnapshotRequest; drives: DiskStorage[] },
): Promise<LivePlan> {
  const { env, vm, request } = target;
  const devices = await blockDevices(client, storageWithRoot(vm, env.dirs));
  const withState = request.action === "load" ||
    (request.action === "create" && request.diskOnly !== true);
  const names = withState
    ? vmStateDrives(vm.name, {
      action: request.action as "create" | "load",
      storage: storageWithRoot(vm, env.dirs),
      devices,
      drive: request.drive,
    })
    : target.drives.map((d) => d.name);
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
  return { attached, steps, withState, stateDrive };
}

/** Runs one planned step on its drives; what it did, drive by drive. */
async function runStep(
  client: QmpClient,
  work: { step: SnapshotStep; plan: LivePlan; request: SnapshotRequest; qemuLog: string },
): Promise<SnapshotDone[]> {
  const { step, plan, request } = work;
  const nodes = step.drives.map((d) => plan.attached.get(d)!.node);
  for (let i = 0; i < step.times; i++) {
    if (step.op === "create" && !plan.withState) {
      await diskOnlySnapshot(client, { name: request.name, nodes });
      continue;
    }
    const args: Record<string, unknown> = { tag: request.name, devices: nodes };
    if (step.op !== "delete") args.vmstate = plan.attached.get(plan.stateDrive!)!.node;
    await runJob(client, step.op, {
      args,
      timeoutMs: request.timeoutS * 1000,
      qemuLog: work.qemuLog,
      onJob: request.onJob,
    });
  }
  return step.drives.map((drive) => ({
    action: step.op,
    drive,
    vmState: step.op !== "delete" && drive === plan.stateDrive,
  }));
}

/** Creates, loads or deletes `request.name` on a running VM's drives with QMP. */
export async function liveAction(
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
    const plan = await planLive(client, { env: ctx, vm, ...options });
    const done: SnapshotDone[] = [];
    for (const step of plan.steps) {
      op = step.op;
      done.push(...await runStep(client, { step, plan, request, qemuLog }));
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
