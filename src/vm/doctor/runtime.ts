/**
 * `doctor`'s checks of the runtime dir: stale sockets, pid files and locks, and VMs marked live
 * whose QEMU is gone. `--fix` removes and settles them as `qvm cleanup` does (`tidyRuntime`).
 */
import type { VmEnv } from "../env.ts";
import { tidyRuntime, type UpkeepAction } from "../upkeep.ts";
import { describeKind, parseRuntimeFile } from "../../vm_files.ts";
import { type Finding, type FindingStatus, okFinding } from "./finding.ts";

const FIX_HINT = "qvm cleanup (or qvm doctor --fix)";

/** Leftovers and VMs wrongly marked live; with `fix`, what was removed and settled first. */
export async function runtimeFindings(env: VmEnv, options: { fix: boolean }): Promise<Finding[]> {
  const fixed = options.fix ? (await tidyRuntime(env, { dryRun: false })).actions : [];
  const remaining = await tidyRuntime(env, { dryRun: true });
  const findings = [
    ...fixed.map((a) => actionFinding(a, true)),
    ...remaining.actions.map((a) => actionFinding(a, false)),
    ...remaining.busy.map((name): Finding => ({
      check: "runtime_files",
      status: "warning",
      what: `VM '${name}' is busy: another qvm command holds its lock, so it was not checked`,
      why: "its leftovers (if any) stay until it is checked again",
      fix: "run qvm doctor again when that command has finished",
    })),
  ];
  const all = [...fixed, ...remaining.actions];
  if (!all.some((a) => a.action === "remove")) {
    findings.push(okFinding(
      "runtime_files",
      `no stale sockets, pid files or locks in ${env.dirs.runtimeDir}`,
    ));
  }
  if (!all.some((a) => a.action === "settle")) {
    findings.push(okFinding("vm_status", "every VM marked live has its QEMU"));
  }
  return findings;
}

/**
 * A cleanup action as a finding (pure): a `problem` still to fix, or `fixed` when `--fix` just
 * did it.
 */
export function actionFinding(action: UpkeepAction, fixed: boolean): Finding {
  const status: FindingStatus = fixed ? "fixed" : "problem";
  if (action.action === "settle") {
    return {
      check: "vm_status",
      status,
      what: `VM '${action.vm}' is ${action.reason}`,
      why: "the database says it is live, misleading anything that reads it until it is settled",
      fix: fixed ? "recorded as ended" : FIX_HINT,
    };
  }
  const path = action.path ?? "";
  const kind = parseRuntimeFile(path.slice(path.lastIndexOf("/") + 1))?.kind ?? "qmp";
  const why = kind === "lock"
    ? "a lock of a VM that no longer exists; harmless clutter"
    : kind === "pid"
    ? "a leftover from a QEMU that is gone; its pid may now belong to another process"
    : "a leftover from a QEMU that is gone; harmless but confusing";
  return {
    check: "runtime_files",
    status,
    what: `stale ${describeKind(kind)} ${path} (${action.reason})`,
    why,
    fix: fixed ? "removed" : FIX_HINT,
  };
}
