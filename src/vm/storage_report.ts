/**
 * What `qvm storage` reports on each VM's disks: what they are (qemu-img info, read with -U so a
 * running VM's disks work too), whether they are intact, and which image files nobody uses.
 */
import { QvmError } from "../errors.ts";
import type { DiskStorage } from "../config/mod.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { qemuAlive } from "./observe.ts";
import { exists } from "../vm_files.ts";
import {
  type DiskResult,
  imageInfo,
  mapLimit,
  orphanedFiles,
  type OrphanFile,
  PROBLEMS,
  referencedFiles,
  storageEntries,
  type StorageEntry,
  verifyDisk,
} from "./storage.ts";

/** qemu-img processes run at once: enough to hide latency, few enough not to swamp the host. */
const CONCURRENCY = 4;

/** The VMs a report covers: `idOrName`, else every VM. */
function selectVms(env: VmEnv, idOrName: string | undefined): VmRecord[] {
  return idOrName === undefined ? env.store.list() : [env.store.require(idOrName)];
}

/** One row of `storage ls`, with the stable keys `--json` prints. */
export interface LsRow {
  vm: string;
  vm_id: string;
  storage: string;
  type: string;
  path: string;
  state: "present" | "missing" | "unreadable";
  format: string | null;
  virtual_size: number | null;
  actual_size: number | null;
  backing_file: string | null;
  error: string | null;
}

async function describe(entry: StorageEntry): Promise<LsRow> {
  const { vm, item, path } = entry;
  const row: LsRow = {
    vm: vm.name,
    vm_id: vm.id,
    storage: item.name,
    type: item.type,
    path,
    state: "present",
    format: null,
    virtual_size: null,
    actual_size: null,
    backing_file: null,
    error: null,
  };
  if (!exists(path, { follow: true })) return { ...row, state: "missing" };
  if (item.type === "virtfs") return row;
  try {
    const info = await imageInfo(path, item.type);
    return {
      ...row,
      format: info.format,
      virtual_size: info.virtualSize,
      actual_size: info.actualSize,
      backing_file: info.backingFile,
    };
  } catch (err) {
    if (err instanceof QvmError && !/not found: install/.test(err.message)) {
      return { ...row, state: "unreadable", error: err.message };
    }
    throw err;
  }
}

/** Each storage item of VM `idOrName` (else every VM) as a `storage ls` row, and the VMs looked at. */
export async function listStorage(
  env: VmEnv,
  idOrName: string | undefined,
): Promise<{ vms: VmRecord[]; rows: LsRow[] }> {
  const vms = selectVms(env, idOrName);
  return { vms, rows: await mapLimit(storageEntries(vms, env.dirs), CONCURRENCY, describe) };
}

/** One disk's verdict in `storage verify`, with the stable keys `--json` prints. */
export interface DiskReport {
  vm: string;
  vm_id: string;
  storage: string;
  path: string;
  result: DiskResult;
  problem: boolean;
  detail: string | null;
  vm_running: boolean;
}

/** How far a verification is: disks checked of `total`, and the one being checked. */
export interface VerifyProgress {
  checked: number;
  total: number;
  current: string;
}

function isDisk(entry: StorageEntry): entry is StorageEntry & { item: DiskStorage } {
  return entry.item.type !== "virtfs";
}

/**
 * Checks every disk of VM `idOrName` (else of every VM), a few at a time, telling `onProgress`
 * as it goes; the VMs looked at and one report per disk (`problem`: a missing or broken disk).
 */
export async function verifyStorage(
  env: VmEnv,
  idOrName: string | undefined,
  options: { onProgress?(state: VerifyProgress): void } = {},
): Promise<{ vms: VmRecord[]; results: DiskReport[] }> {
  const vms = selectVms(env, idOrName);
  const disks = storageEntries(vms, env.dirs).filter(isDisk);
  const state: VerifyProgress = { checked: 0, total: disks.length, current: "" };
  options.onProgress?.({ ...state });
  const verdicts = await mapLimit(disks, CONCURRENCY, async (e) => {
    state.current = e.path;
    options.onProgress?.({ ...state });
    const verdict = await verifyDisk(e.vm, e.item, e.path);
    state.checked++;
    options.onProgress?.({ ...state });
    return verdict;
  });
  const running = new Set(vms.filter((vm) => qemuAlive(env, vm)).map((vm) => vm.id));
  const results = disks.map((e, i) => ({
    vm: e.vm.name,
    vm_id: e.vm.id,
    storage: e.item.name,
    path: e.path,
    result: verdicts[i].result,
    problem: PROBLEMS.has(verdicts[i].result),
    detail: verdicts[i].detail,
    vm_running: running.has(e.vm.id),
  }));
  return { vms, results };
}

/** Files in qvm's disk folder that no VM references (see `orphanedFiles`). */
export function orphanedStorage(env: VmEnv): OrphanFile[] {
  return orphanedFiles(env.dirs, referencedFiles(env.store.list(), env.dirs));
}
