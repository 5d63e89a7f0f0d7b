/**
 * A guest whose file systems qvm froze for a live snapshot must never stay frozen: its writes
 * hang and its agent refuses exec. Before qvm asks the guest agent to freeze, it writes a marker,
 * `<runtime>/<id>.frozen` (holding the QEMU pid), and removes it only once the guest is thawed.
 *
 * The thaw runs on every way out qvm controls: the work's end, its error or timeout, and Ctrl-C
 * or SIGTERM (see `withSignalsHeld`). After a way out it does not control (SIGKILL, a crash)
 * the marker stays; the next command that reads the VM (`status`, `ls`, `exec`, `ssh`, and every
 * change under the VM's lock, `snapshot` among them) or `doctor --fix` finds it with one lstat and
 * thaws the guest. While the freezing command still runs (it holds the VM's lock) or the agent
 * does not answer, readers report the VM as `frozen`.
 *
 * Loaded lazily: a VM without the marker costs a reader one lstat and no import.
 */
import { QvmError, TimeoutError } from "../errors.ts";
import { withSignalsHeld } from "../signals.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { agentSocketOf } from "./agent.ts";
import { acquireLock, isLocked, type VmLock } from "./lock.ts";
import { exists, vmPaths } from "../vm_files.ts";
import { isOurQemu, markersIn } from "../qemu/process.ts";
import { createFreshFile } from "./safe_files.ts";
import { agentModule } from "../cloud/lazy.ts";

/** How long the agent gets to answer a ping: no answer means no agent, so no freeze. */
const PING_TIMEOUT_MS = 3000;

/**
 * How long an agent that answered the ping gets to freeze (it syncs the guest's dirty data
 * first) before the snapshot goes on unfrozen.
 */
const FREEZE_TIMEOUT_MS = 30_000;

/** How long the agent gets to answer a thaw. */
const THAW_TIMEOUT_MS = 10_000;

function removeMarker(path: string): void {
  try {
    Deno.removeSync(path);
  } catch { /* gone already */ }
}

/** The QEMU pid the marker at `path` names, or undefined (no marker, or not a pid). */
function markerPid(path: string): number | undefined {
  try {
    const pid = Number(Deno.readTextFileSync(path).trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** What {@link withFrozenGuest} did around the work. */
export interface FreezeResult<T> {
  value: T;
  /** Number of file systems the agent froze; 0 when it did not (then `reason` says why). */
  frozen: number;
  /** Number of file systems the thaw after the work thawed. */
  thawed: number;
  reason?: string;
}

/**
 * Runs `work` on a running VM (the caller holds its lock) with the marker in place, and then
 * thaws the guest through its agent on `socket`. With `freeze`, the guest's file systems are
 * frozen first, so a live snapshot holds consistent file systems; without, the work is one that
 * may bring back a frozen guest (loading a snapshot saved frozen). An agent that does not answer
 * the freeze, or refuses it, never stops the work: it runs unfrozen, `frozen` is 0 and `reason`
 * says why. A thaw that fails leaves the marker for the next command, and is an error when the
 * work itself succeeded: the guest may still be frozen, and the user must know.
 */
export async function withFrozenGuest<T>(
  env: VmEnv,
  target: { vm: VmRecord; socket: string; freeze: boolean },
  work: () => Promise<T>,
): Promise<FreezeResult<T>> {
  const { vm, socket } = target;
  const marker = vmPaths(env.dirs, vm.id).frozenFile;
  const { agentFreeze, agentPing, agentThaw } = await agentModule();
  createFreshFile(marker);
  Deno.writeTextFileSync(marker, `${vm.pid ?? ""}\n`);
  let frozen = 0;
  let thawed = 0;
  let reason: string | undefined;
  let thawError: Error | undefined;
  const thaw = async () => {
    if (!exists(marker)) return;
    try {
      thawed = await agentThaw(socket, THAW_TIMEOUT_MS);
      removeMarker(marker);
      thawError = undefined;
    } catch (error) {
      thawError = error as Error;
    }
  };
  /** No agent answers (none in the guest): nothing was frozen, and nothing can be thawed. */
  const noAgent = async () => {
    if (await agentPing(socket, PING_TIMEOUT_MS)) return false;
    removeMarker(marker);
    reason = "the guest agent did not answer (is qemu-guest-agent running in the guest?)";
    return true;
  };
  const interrupted = () =>
    thawError
      ? `VM '${vm.name}''s file systems may be frozen: the thaw failed (${thawError.message}); ` +
        `the next qvm command on it thaws them ('qvm status ${vm.name}')`
      : `VM '${vm.name}''s file systems were thawed`;
  const value = await withSignalsHeld(interrupted, async (signal) => {
    // Ctrl-C or SIGTERM ends the wait for the agent or the work at once; the thaw then runs.
    const stopped = new Promise<never>((_, reject) => {
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
    const until = <V>(step: Promise<V>) => {
      step.catch(() => {}); // it may still fail after an interrupt, when nobody waits for it
      return Promise.race([step, stopped]);
    };
    try {
      if (target.freeze && !await until(noAgent())) {
        try {
          frozen = await until(agentFreeze(socket, FREEZE_TIMEOUT_MS));
        } catch (error) {
          if (signal.aborted) throw error;
          reason = (error as Error).message;
          // Refused: nothing is frozen. No answer: a late one may still freeze, so thaw below.
          if (!(error instanceof TimeoutError)) removeMarker(marker);
        }
      }
      const value = await until(work());
      // A loaded guest is the one the snapshot saved: ask it, not the one before.
      if (!target.freeze) await until(noAgent());
      return value;
    } finally {
      await thaw();
    }
  });
  if (thawError) {
    throw new QvmError(
      `VM '${vm.name}''s file systems may still be frozen: the guest agent did not answer the ` +
        `thaw (${thawError.message}); the next qvm command on it tries again ` +
        `('qvm status ${vm.name}')`,
    );
  }
  return { value, frozen, thawed, reason };
}

/** What a reader found of a freeze: none, one it has just undone, or one that holds. */
export type FreezeState = "none" | "thawed" | "frozen";

/** Options of {@link settleFreeze}. */
export interface SettleOptions {
  /** The caller holds the VM's lock. */
  locked?: boolean;
  /** Thaw a freeze nobody holds (default true); false only reports it (`doctor` without --fix). */
  thaw?: boolean;
  /** Bound of the agent's answer. */
  timeoutMs?: number;
}

/**
 * Settles the marker of running VM `vm`, left by a qvm that froze its guest: one lstat when there
 * is none. A marker of an earlier QEMU is removed. A freeze that the freezing command still holds
 * (its lock is taken) is `frozen`; one that nobody holds is thawed through the agent, under the
 * VM's lock (taken without waiting), and is `thawed`, or `frozen` when the agent does not answer.
 */
export async function settleFreeze(
  env: VmEnv,
  vm: VmRecord,
  options: SettleOptions = {},
): Promise<FreezeState> {
  const paths = vmPaths(env.dirs, vm.id);
  if (!exists(paths.frozenFile)) return "none";
  // A marker naming another QEMU is an earlier run's: this one was never frozen by qvm.
  const held = () => markerPid(paths.frozenFile) === vm.pid ? "frozen" : "none";
  if (options.thaw === false) return held();
  let lock: VmLock | undefined;
  if (!options.locked) {
    if (isLocked(paths.lockFile)) return held(); // the freezing command may still run
    try {
      lock = await acquireLock(paths.lockFile, { timeoutMs: 0, what: `VM '${vm.name}'` });
    } catch (error) {
      if (error instanceof TimeoutError) return held(); // taken meanwhile
      throw error;
    }
  }
  try {
    if (!exists(paths.frozenFile)) return "none"; // thawed meanwhile
    const socket = held() === "frozen" ? agentSocketOf(env, vm) : undefined;
    if (socket === undefined) {
      removeMarker(paths.frozenFile); // an earlier QEMU's, or no agent channel to thaw with
      return "none";
    }
    const { agentThaw } = await agentModule();
    try {
      await agentThaw(socket, options.timeoutMs ?? THAW_TIMEOUT_MS);
    } catch {
      return "frozen";
    }
    removeMarker(paths.frozenFile);
    return "thawed";
  } finally {
    lock?.release();
  }
}

/** A running VM whose guest a qvm froze, as `doctor` reports it. */
export interface FrozenGuest {
  name: string;
  /** `busy`: a qvm command holds the VM (the freezing one may still run). */
  state: "frozen" | "thawed" | "busy";
}

/**
 * The running VMs whose frozen-guest marker is there (one lstat per live VM); with `fix`, each
 * freeze nobody holds is thawed as any command on the VM would.
 */
export async function frozenGuests(
  env: VmEnv,
  options: { fix: boolean },
): Promise<FrozenGuest[]> {
  const found: FrozenGuest[] = [];
  for (const brief of env.store.listLive()) {
    const paths = vmPaths(env.dirs, brief.id);
    if (!exists(paths.frozenFile)) continue;
    const vm = env.store.require(brief.id);
    if (!isOurQemu(vm.pid, markersIn(env.dirs.runtimeDir, vm))) continue; // gone: cleanup removes the mark
    if (isLocked(paths.lockFile)) {
      found.push({ name: vm.name, state: "busy" });
      continue;
    }
    const state = await settleFreeze(env, vm, { thaw: options.fix });
    if (state !== "none") found.push({ name: vm.name, state });
  }
  return found;
}
