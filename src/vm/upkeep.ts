/**
 * Housekeeping shared by `cleanup` and `doctor --fix`: find runtime files (sockets, pid files,
 * locks) left by QEMUs that are gone or by VMs no longer in the database, and VMs still marked
 * live whose QEMU is gone; remove and settle them under each VM's lock. A live QEMU's files and a
 * held lock are never touched.
 */
import { TimeoutError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import { findQemuWithUuid, isOurQemu, markersIn } from "../qemu/process.ts";
import { Deadline, type VmEnv } from "./env.ts";
import { VmRemovedError, withVm } from "./guard.ts";
import { acquireLock, isLocked } from "./lock.ts";
import { isLive } from "./observe.ts";
import { exists, vmPaths } from "../vm_files.ts";
import { type RuntimeFile, scanRuntimeDir } from "../vm_files.ts";

/** One thing cleanup does (or, in a dry run, would do); the shape `cleanup --json` prints. */
export interface UpkeepAction {
  action: "remove" | "settle";
  /** The file removed (for `remove`), else null. */
  path: string | null;
  /** The VM's name, or its id when the database does not know it. */
  vm: string | null;
  reason: string;
}

/** What is known about one VM id when planning: its files, its row, its QEMU and its lock. */
export interface VmFacts {
  id: string;
  files: readonly RuntimeFile[];
  vm?: Pick<VmRecord, "name" | "status" | "pid">;
  /** A live process carries `-uuid <id>`: its files are in use, whatever the database says. */
  qemuAlive: boolean;
  /** Another qvm command holds the VM's lock: it is busy, so nothing may be touched. */
  lockHeld: boolean;
}

/**
 * Plans what to do for one VM id (pure). A VM's own lock file is kept: it is its lock, not a
 * leftover (removing it while another command waits on it could let two commands in at once);
 * a lock file of a VM that no longer exists is removed.
 */
export function planUpkeep(facts: VmFacts): { actions: UpkeepAction[]; busy: boolean } {
  if (facts.qemuAlive) return { actions: [], busy: false };
  const actions: UpkeepAction[] = [];
  const { vm } = facts;
  if (vm && isLive(vm.status)) {
    actions.push({
      action: "settle",
      path: null,
      vm: vm.name,
      reason: `marked ${vm.status} but its QEMU${vm.pid ? ` (pid ${vm.pid})` : ""} is gone`,
    });
  }
  for (const file of facts.files) {
    if (file.kind === "lock" && vm) continue;
    actions.push({
      action: "remove",
      path: file.path,
      vm: vm?.name ?? facts.id,
      reason: vm ? `VM '${vm.name}' is not running` : `no VM with id '${facts.id}' exists`,
    });
  }
  if (facts.lockHeld && actions.length > 0) return { actions: [], busy: true };
  return { actions, busy: false };
}

/** What a cleanup pass did (or would do), and the VMs it left alone because they were busy. */
export interface UpkeepResult {
  actions: UpkeepAction[];
  /** VMs (names, or ids) whose lock another qvm command held. */
  busy: string[];
}

function vmWithId(env: VmEnv, id: string): VmRecord | undefined {
  const vm = env.store.get(id);
  return vm?.id === id ? vm : undefined; // a file named after a VM's *name* is not that VM's
}

function removeFile(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** Removes the planned files (re-checked: a start may have finished meanwhile). */
function removePlanned(actions: readonly UpkeepAction[]): UpkeepAction[] {
  const done: UpkeepAction[] = [];
  for (const action of actions) {
    if (action.action !== "remove" || !action.path || !exists(action.path)) continue;
    removeFile(action.path);
    done.push(action);
  }
  return done;
}

/** Settles and tidies a known VM through the one locked path (the guard observes and settles). */
function tidyKnown(
  env: VmEnv,
  vm: VmRecord,
  options: { files: RuntimeFile[]; liveUuids: ReadonlySet<string> },
): Promise<UpkeepAction[]> {
  return withVm(env, vm, { deadline: Deadline.in(0) }, (seen) => {
    const done: UpkeepAction[] = [];
    if (seen.vm.status !== vm.status) {
      const how = seen.vm.stopReason ? ` (${seen.vm.stopReason})` : "";
      const { actions } = planUpkeep({
        id: vm.id,
        files: [],
        vm,
        qemuAlive: false,
        lockHeld: false,
      });
      for (const action of actions) {
        done.push({ ...action, reason: `${action.reason}; now ${seen.vm.status}${how}` });
      }
    }
    const qemuAlive = options.liveUuids.has(vm.id) ||
      isOurQemu(seen.vm.pid, markersIn(env.dirs.runtimeDir, vm)) ||
      isLive(seen.vm.status);
    const files = options.files.filter((f) => exists(f.path));
    const { actions } = planUpkeep({ id: vm.id, files, vm: seen.vm, qemuAlive, lockHeld: false });
    done.push(...removePlanned(actions));
    return Promise.resolve(done);
  });
}

/** Removes the files of an id no VM has, under that id's lock; the lock file goes last, held. */
async function tidyUnknown(
  env: VmEnv,
  id: string,
  options: { files: RuntimeFile[]; liveUuids: ReadonlySet<string> },
): Promise<UpkeepAction[]> {
  const lockFile = vmPaths(env.dirs, id).lockFile;
  const lock = await acquireLock(lockFile, { timeoutMs: 0, what: `VM '${id}'` });
  try {
    if (vmWithId(env, id)) return []; // defined meanwhile
    const files = options.files.filter((f) => exists(f.path) && f.path !== lockFile);
    const qemuAlive = options.liveUuids.has(id);
    const { actions } = planUpkeep({ id, files, qemuAlive, lockHeld: false });
    const done = removePlanned(actions);
    const hadLock = options.files.some((f) => f.path === lockFile);
    // Taking the lock may have created its file: it goes too, while held, so no command waits on it.
    if (!qemuAlive) lock.releaseAndRemove();
    if (!qemuAlive && hadLock) {
      done.push({
        action: "remove",
        path: lockFile,
        vm: id,
        reason: `no VM with id '${id}' exists`,
      });
    }
    return done;
  } finally {
    lock.release();
  }
}

/**
 * The ids whose QEMU runs now and is ours (see `isOurQemu`), known VM or not: a process of
 * another user or one not started by this qvm does not keep a VM's runtime files.
 */
function ourLiveUuids(env: VmEnv): Set<string> {
  const ours = new Set<string>();
  for (const { pid, uuid } of findQemuWithUuid()) {
    const vm = vmWithId(env, uuid);
    if (isOurQemu(pid, markersIn(env.dirs.runtimeDir, vm ?? { id: uuid }))) ours.add(uuid);
  }
  return ours;
}

/**
 * Finds stale runtime files and VMs wrongly marked live; unless `dryRun`, removes and settles
 * them, each VM under its lock (taken without waiting: a busy VM is skipped and reported).
 */
export async function tidyRuntime(
  env: VmEnv,
  options: { dryRun: boolean },
): Promise<UpkeepResult> {
  const byId = scanRuntimeDir(env.dirs.runtimeDir);
  for (const vm of env.store.listBrief()) {
    if (isLive(vm.status) && !byId.has(vm.id)) byId.set(vm.id, []);
  }
  const liveUuids = ourLiveUuids(env);
  const result: UpkeepResult = { actions: [], busy: [] };
  for (const [id, files] of [...byId].sort(([a], [b]) => a.localeCompare(b))) {
    const vm = vmWithId(env, id);
    const lockFile = vmPaths(env.dirs, id).lockFile;
    const qemuAlive = liveUuids.has(id) ||
      (vm !== undefined && isOurQemu(vm.pid, markersIn(env.dirs.runtimeDir, vm)));
    const plan = planUpkeep({ id, files, vm, qemuAlive, lockHeld: isLocked(lockFile) });
    if (plan.busy) result.busy.push(vm?.name ?? id);
    if (options.dryRun || plan.actions.length === 0) {
      result.actions.push(...plan.actions);
      continue;
    }
    try {
      const done = vm
        ? await tidyKnown(env, vm, { files, liveUuids })
        : await tidyUnknown(env, id, { files, liveUuids });
      result.actions.push(...done);
    } catch (err) {
      if (err instanceof VmRemovedError) continue;
      if (!(err instanceof TimeoutError)) throw err;
      result.busy.push(vm?.name ?? id);
    }
  }
  return result;
}
