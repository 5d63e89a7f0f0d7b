/**
 * `doctor`'s checks of the QEMU processes that use this runtime dir or carry a VM's `-uuid`:
 * orphans of no VM, QEMUs of a VM that does not track them (`--fix` adopts them), and QEMUs
 * that are not qvm's. `--fix` never kills a process.
 */
import { resolve } from "../../path.ts";
import { QvmError } from "../../errors.ts";
import { findQemuWithUuid, isOurQemu, markersIn, type QemuProcess } from "../../qemu/process.ts";
import type { VmRecord } from "../../state/mod.ts";
import { Deadline, type VmEnv } from "../env.ts";
import { withVm } from "../guard.ts";
import { isLive } from "../observe.ts";
import { type Finding, okFinding } from "./finding.ts";

/**
 * Live QEMUs of this qvm (see `isOurQemu`) of no VM qvm knows, or of a VM that does not track
 * them; and QEMUs that claim a VM's -uuid or this runtime dir but are not qvm's (named only).
 */
export async function processFindings(env: VmEnv, options: { fix: boolean }): Promise<Finding[]> {
  const mark = `${resolve(env.dirs.runtimeDir)}/`;
  const findings: Finding[] = [];
  for (const qemu of findQemuWithUuid()) {
    const found = env.store.get(qemu.uuid);
    const vm = found?.id === qemu.uuid ? found : undefined;
    if (!isOurQemu(qemu.pid, markersIn(env.dirs.runtimeDir, vm ?? { id: qemu.uuid }))) {
      if (vm || qemu.cmdline.some((arg) => arg.includes(mark))) {
        findings.push(foreignFinding(env, { qemu, vm }));
      }
    } else if (vm) {
      const untracked = await untrackedFinding(env, { pid: qemu.pid, vm, fix: options.fix });
      if (untracked) findings.push(untracked);
    } else {
      findings.push(orphanFinding(env, qemu));
    }
  }
  if (findings.some((f) => f.check !== "foreign_qemu")) return findings;
  return [
    ...findings,
    okFinding(
      "orphaned_qemu",
      "every QEMU process using this runtime dir belongs to a VM that tracks it",
    ),
  ];
}

/** A QEMU of this qvm whose `-uuid` is no VM's: nothing will ever stop it. */
function orphanFinding(env: VmEnv, qemu: QemuProcess): Finding {
  const { pid, uuid } = qemu;
  return {
    check: "orphaned_qemu",
    status: "problem",
    what: `QEMU process ${pid} (-uuid ${uuid}) uses ${env.dirs.runtimeDir} but no VM has that id`,
    why: "qvm will never stop it: it keeps its memory, CPU and disk images",
    fix: `kill ${pid} once you are sure it is not needed (doctor --fix does not kill processes)`,
  };
}

/**
 * A live QEMU of a known VM whose row does not record it (a start killed at the wrong moment):
 * `--fix` adopts it through the VM's locked path, as any later command of that VM would.
 */
async function untrackedFinding(
  env: VmEnv,
  found: { pid: number; vm: VmRecord; fix: boolean },
): Promise<Finding | undefined> {
  const { pid, vm } = found;
  if (vm.pid === pid && isLive(vm.status)) return undefined;
  const finding: Finding = {
    check: "untracked_qemu",
    status: "problem",
    what: `QEMU process ${pid} is VM '${vm.name}''s, but qvm records it as ${vm.status}`,
    why: "qvm would not stop it, and a start could be refused or confused by it",
    fix: `qvm status ${vm.name} adopts it (so does doctor --fix); then stop it with qvm stop`,
  };
  if (found.fix && await adoptQemu(env, { pid, vm })) {
    return { ...finding, status: "fixed", fix: "adopted: qvm now tracks it" };
  }
  return finding;
}

/**
 * `--fix` for an untracked QEMU: takes the VM's lock and observes it, which records the QEMU as
 * the VM's; true when the VM then tracks `pid`.
 */
export async function adoptQemu(
  env: VmEnv,
  found: { pid: number; vm: VmRecord },
): Promise<boolean> {
  try {
    const adopted = await withVm(
      env,
      found.vm,
      { deadline: Deadline.in(5000) },
      (seen) => Promise.resolve(seen.vm),
    );
    return adopted.pid === found.pid;
  } catch (err) {
    if (!(err instanceof QvmError)) throw err;
    return false;
  }
}

/** `uid` with its user name from /etc/passwd when there is one: `65534 (nobody)`. */
function userOf(uid: number): string {
  try {
    for (const line of Deno.readTextFileSync("/etc/passwd").split("\n")) {
      const [name, , id] = line.split(":");
      if (id !== undefined && Number(id) === uid) return `${uid} (${name})`;
    }
  } catch { /* no passwd file: the number alone */ }
  return String(uid);
}

/**
 * A QEMU that carries a VM's `-uuid`, or names this runtime dir, but is not qvm's (another user
 * runs it, or qvm did not start it with this runtime dir: a copy, a domain exported to libvirt).
 */
function foreignFinding(
  env: VmEnv,
  found: { qemu: QemuProcess; vm: VmRecord | undefined },
): Finding {
  const { qemu, vm } = found;
  const ownUid = Deno.uid() ?? 0;
  const who = qemu.uid === ownUid ? "" : `, running as user ${userOf(qemu.uid)},`;
  const claims = vm
    ? `carries VM '${vm.name}''s -uuid`
    : `names ${env.dirs.runtimeDir} (-uuid ${qemu.uuid})`;
  const not = qemu.uid === ownUid
    ? "it was not started by qvm with this runtime dir (no pid file and QMP socket of qvm's)"
    : "it runs as another user";
  return {
    check: "foreign_qemu",
    status: "warning",
    what: `QEMU process ${qemu.pid}${who} ${claims} but is not qvm's: ${not}`,
    why: "qvm never signals it nor counts it as the VM running, and starts the VM beside it " +
      "(QEMU's image locks keep two QEMUs off one writable disk)",
    fix: `see who started it (ps -o user,pid,args -p ${qemu.pid}); a VM exported to libvirt ` +
      "is stopped with virsh",
  };
}
