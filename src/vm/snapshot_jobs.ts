/**
 * Live snapshot jobs on a running QEMU: `snapshot-save|load|delete` run as QMP jobs and waited
 * for, with QEMU's own log read for the reason of a failure, and the disk-only transaction.
 */
import { QvmError, TimeoutError } from "../errors.ts";
import { sleep } from "../timers.ts";
import type { QmpClient } from "../qemu/qmp.ts";
import { qemuMessages } from "../qemu/process.ts";
import type { SnapshotAction, SnapshotJobProgress } from "./_snapshot.ts";

/** The QMP job command of each action. */
export const JOB_COMMANDS: Readonly<Record<SnapshotAction, string>> = {
  create: "snapshot-save",
  load: "snapshot-load",
  delete: "snapshot-delete",
};

/** Bytes in `file` (0 if missing), to read what QEMU logs from there on. */
export function fileSize(file: string): number {
  try {
    return Deno.statSync(file).size;
  } catch {
    return 0;
  }
}

/** What QEMU wrote to its log after byte `offset`, trimmed ("" if nothing or unreadable). */
export function logSince(file: string, offset: number): string {
  try {
    const bytes = Deno.readFileSync(file);
    return qemuMessages(new TextDecoder().decode(bytes.subarray(Math.min(offset, bytes.length))))
      .trim();
  } catch {
    return "";
  }
}

/** A snapshot job that QEMU ran and that ended in an error (QEMU's words in the message). */
export class JobFailure extends QvmError {
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

/** Starts a job with `command`; a QEMU without it (before 6.0) is told apart. */
async function startJob(
  client: QmpClient,
  job: { command: string; args: Record<string, unknown> },
): Promise<void> {
  try {
    await client.execute(job.command, job.args);
  } catch (err) {
    if ((err as { qmpClass?: string }).qmpClass === "CommandNotFound") {
      throw new QvmError(
        `live snapshots need QEMU 6.0 or newer (no QMP ${job.command}); stop the VM to snapshot ` +
          "offline",
      );
    }
    throw err;
  }
}

/**
 * Runs one snapshot job and waits until it concludes (JOB_STATUS_CHANGE), then reads its
 * `error` from `query-jobs` and dismisses it. A job error is a QvmError with QEMU's words; what
 * QEMU logged meanwhile (often the real reason, e.g. a RAM size mismatch) becomes its detail.
 */
export async function runJob(
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
  await startJob(client, { command, args: { "job-id": jobId, ...options.args } });
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

/**
 * Takes a disk-only snapshot of a running VM's drives (no VM state): one QMP `transaction` of
 * `blockdev-snapshot-internal-sync`, so every drive is snapshotted at the same point or none is.
 */
export async function diskOnlySnapshot(
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
