/**
 * Offline snapshots: `qemu-img snapshot` on the image files of a stopped VM, drive by drive, with
 * a create that is interrupted taken back off the drives it had reached.
 */
import { NotFoundError, QvmError, UsageError } from "../errors.ts";
import { diskFile } from "../config/mod.ts";
import type { DiskStorage } from "../config/mod.ts";
import type { VmRecord } from "../state/mod.ts";
import { qemuImg } from "../qemu/img.ts";
import { withSignalsHeld } from "../signals.ts";
import type { VmEnv } from "./env.ts";
import { vmPaths } from "../vm_files.ts";
import {
  imgFailure,
  parseSnapshots,
  planSteps,
  rawDriveMessage,
  type SnapshotAction,
  type SnapshotDone,
  type SnapshotInfo,
  type SnapshotRequest,
  type SnapshotStep,
} from "./_snapshot.ts";

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
export async function imageSnapshots(
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

const IMG_FLAGS: Readonly<Record<SnapshotAction, string>> = {
  create: "-c",
  load: "-a",
  delete: "-d",
};

/** Creates, loads or deletes `request.name` on a stopped VM's `drives` with qemu-img. */
export async function offlineAction(
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
    try {
      return await runImgSteps({ request, steps, files, existing, signal });
    } catch (err) {
      if (signal.aborted && request.action === "create") {
        await undoCreate({ name: request.name, drives, files, existing });
      }
      throw err;
    }
  });
}

/**
 * Runs the planned steps with qemu-img, drive by drive; a create stops between snapshots once
 * `signal` is aborted. What was done, per drive.
 */
async function runImgSteps(plan: {
  request: SnapshotRequest;
  steps: SnapshotStep[];
  files: Map<string, string>;
  existing: Map<string, SnapshotInfo[]>;
  signal: AbortSignal;
}): Promise<SnapshotDone[]> {
  const { request, files, existing, signal } = plan;
  const done: SnapshotDone[] = [];
  for (const step of plan.steps) {
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
