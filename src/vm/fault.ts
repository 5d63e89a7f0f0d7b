/**
 * Waits that end at once when QEMU cannot get where they wait for: every wait (`start --wait-for`
 * ssh, agent, serial, qmp, and `qvm wait`) asks `checkQemu` as it goes. A QEMU that is gone, or
 * that sits in a run state the guest cannot leave by itself (a KVM failure, a panic, a power-off
 * with QEMU told to stay), fails the wait with exit 1 instead of running out its timeout; where
 * KVM is involved the message says how to run the VM without it.
 */
import { QvmError } from "../errors.ts";
import { isOurQemu, logRunState, markersIn } from "../qemu/process.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { FAULT_STATES } from "./observe.ts";
import { type VmPaths, vmPaths } from "../vm_files.ts";
import { qmpOnce } from "./qmp_session.ts";
import { runState } from "../qemu/run_state.ts";

/** The config change that runs a VM without KVM, as the hints name it. */
export const TCG_HINT = "set accel tcg in the config (arguments: [{accel: tcg}])";

/** True if QEMU runs the VM's guest with KVM (QMP `query-kvm`, else its log's KVM error). */
export async function kvmInUse(paths: VmPaths): Promise<boolean> {
  try {
    const kvm = await qmpOnce<{ enabled: boolean }>(paths.monitorSocket, "query-kvm", {
      timeoutMs: 500,
      retry: false,
    });
    return kvm.enabled === true;
  } catch {
    try {
      return Deno.readTextFileSync(paths.qemuLog).includes("KVM internal error");
    } catch {
      return false;
    }
  }
}

/** QEMU sits in a run state the guest cannot leave by itself (exit 1). */
export class QemuFault extends QvmError {
  override name = "QemuFault";
}

/**
 * KVM could not run the guest (QEMU's run state `internal-error` with KVM on): the guest may
 * well run under TCG, which `launch` then tries.
 */
export class KvmFaultError extends QemuFault {
  override name = "KvmFaultError";
}

/** The error a wait ends with when QEMU sits in fault `state`; `kvm`: the guest runs on KVM. */
export function faultError(state: string, kvm: boolean): QemuFault {
  if (state === "internal-error") {
    if (kvm) {
      return new KvmFaultError(
        `KVM failed to run the guest (QEMU run state internal-error); ${TCG_HINT} to run it ` +
          "without KVM",
      );
    }
    return new QemuFault(
      "the guest stopped with an emulation failure (QEMU run state internal-error)",
    );
  }
  if (state === "guest-panicked") {
    return new QemuFault(
      "the guest panicked (QEMU run state guest-panicked)" +
        (kvm ? `; if KVM does not work on this host, ${TCG_HINT}` : ""),
    );
  }
  return new QemuFault(`the guest powered off (QEMU run state ${state})`);
}

/**
 * The fault QEMU sits in, as the error a wait ends with, or undefined while it is not in one. The
 * run state comes from QEMU's trace in its log (no QMP), or from QMP for a QEMU started without it.
 */
export async function faultOf(paths: VmPaths): Promise<QemuFault | undefined> {
  const state = logRunState(paths.qemuLog) ?? await runState(paths.monitorSocket, 500);
  if (state === undefined || !FAULT_STATES.has(state)) return undefined;
  return faultError(state, await kvmInUse(paths));
}

/**
 * Throws when VM `vm`'s QEMU `pid` is gone (a QvmError saying `gone`) or sits in a fault state
 * (see `faultOf`): what a wait calls between its own probes.
 */
export async function checkQemu(
  env: VmEnv,
  vm: VmRecord,
  options: { pid: number; gone: string },
): Promise<void> {
  if (!isOurQemu(options.pid, markersIn(env.dirs.runtimeDir, vm))) throw new QvmError(options.gone);
  const fault = await faultOf(vmPaths(env.dirs, vm.id));
  if (fault) throw fault;
}
