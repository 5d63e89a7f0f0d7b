/**
 * Waiting for a VM to reach a state (`qvm wait`): running, stopped, answering over SSH or the guest
 * agent, or a text on its serial console. Reads only: takes no lock. Ends as soon as the VM is
 * somewhere it cannot reach the state from by itself (e.g. stopped while waiting for ssh).
 */
import { QvmError, TimeoutError, UsageError } from "../errors.ts";
import type { VmRecord } from "../state/mod.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { FAULT_STATES, isLive, observe, type ObservedStatus } from "./observe.ts";
import { checkQemu, faultError, kvmInUse, QemuFault } from "./fault.ts";
import { vmPaths } from "../vm_files.ts";
import { serialLogEnd, serialStart } from "./serial_start.ts";
import { describeSpec, SerialScanner, waitReady, type WaitTarget } from "./ready.ts";

/**
 * Whether `status` reaches `target` (`true`), may still (`undefined`), or cannot by itself (the
 * reason). Pure: the table `wait` acts on.
 */
export function verdict(target: WaitTarget, status: ObservedStatus): true | string | undefined {
  if (target.kind === "stopped") return isLive(status) ? undefined : true;
  if (FAULT_STATES.has(status)) return `it is in QEMU run state ${status}`;
  if (target.kind === "running") return status === "running" ? true : undefined;
  if (!isLive(status)) return `it is ${status}`;
  return undefined; // ssh, agent, serial: the wait probes a running VM
}

/** How often `wait` looks at the VM's status. */
const LOOK_MS = 200;

/**
 * Waits until `vm` reaches `target` by `deadline`, telling `onStatus` each status it sees.
 * Throws a QvmError (exit 1) when the VM cannot get there by itself, TimeoutError (2) on timeout.
 */
export function waitForState(
  env: VmEnv,
  vm: VmRecord,
  options: { target: WaitTarget; deadline: Deadline; onStatus?: (status: string) => void },
): Promise<void> {
  const { target } = options;
  const paths = vmPaths(env.dirs, vm.id);
  const what = describeSpec(target);
  const cantReach = (why: string) => new QvmError(`VM '${vm.name}' cannot reach ${what}: ${why}`);
  // This run's output only: from where the log stood when its QEMU started (recorded by start),
  // else, for a QEMU started without that record, from now.
  const scanner = target.kind === "serial"
    ? new SerialScanner(
      paths.serialLog,
      target.text,
      serialStart(paths) ?? serialLogEnd(paths),
    )
    : undefined;
  let status = "";
  return waitReady(env, {
    spec: target,
    deadline: options.deadline,
    scanner,
    watch: {
      lookMs: LOOK_MS,
      async look() {
        const row = env.store.get(vm.id);
        if (!row || row.id !== vm.id) throw cantReach("it was removed");
        const seen = await observe(env, row, {
          qmp: target.kind !== "stopped",
          timeoutMs: Math.max(Math.min(options.deadline.remainingMs(), 1000), 50),
        });
        status = seen.status;
        options.onStatus?.(seen.status);
        const answer = verdict(target, seen.status);
        if (answer === true) return { reached: true };
        if (typeof answer === "string") {
          if (FAULT_STATES.has(seen.status)) {
            throw cantReach(faultError(seen.status, await kvmInUse(paths)).message);
          }
          throw cantReach(answer);
        }
        return {
          live: isLive(seen.status),
          running: seen.status === "running" ? seen.vm : undefined,
        };
      },
      guestCheck: (guest) => checkQemu(env, guest, { pid: guest.pid!, gone: "QEMU exited" }),
      guestFailed(err) {
        if (err instanceof TimeoutError) throw err;
        if (err instanceof QemuFault) throw cantReach(err.message);
        // No forward to port 22, or no agent channel: this VM never answers that way.
        if (err instanceof UsageError) throw new QvmError(err.message);
        // QEMU went away meanwhile: the next look says where the VM ended up.
        if (!(err instanceof QvmError)) throw err;
      },
      timedOut: () =>
        Promise.resolve(
          new TimeoutError(`VM '${vm.name}' did not reach ${what} in time (status: ${status})`),
        ),
    },
  });
}
