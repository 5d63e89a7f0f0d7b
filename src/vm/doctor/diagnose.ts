/**
 * `qvm doctor`'s checks, in the order they are reported: the host's tools and KVM, qvm's folders,
 * its SSH key, the database, then what needs the VMs (their binaries, runtime leftovers, QEMU
 * processes, frozen guests). With `fix`, each check repairs what it safely can first.
 */
import type { VmEnv } from "../env.ts";
import { QvmError } from "../../errors.ts";
import { databaseFindings } from "./database.ts";
import { folderFindings } from "./dirs.ts";
import type { Finding } from "./finding.ts";
import { hostFindings } from "./host.ts";
import { processFindings } from "./processes.ts";
import { runtimeFindings } from "./runtime.ts";
import { sshKeyFinding } from "./ssh_key.ts";
import { frozenFindings, vmBinaryFindings } from "./vms.ts";

/**
 * Runs every check (repairing with `fix`). A refused data or runtime dir stops the checks after
 * the folders; a database that cannot be read stops those that need the VMs, and one that
 * cannot be written turns `fix` off for them.
 */
export async function diagnose(env: VmEnv, options: { fix: boolean }): Promise<Finding[]> {
  const findings = [...await hostFindings(), ...folderFindings(env.dirs, options)];
  if (findings.some((f) => f.refused)) return findings;
  findings.push(sshKeyFinding(env.dirs.dataDir, options));
  const database = databaseFindings(env);
  findings.push(...database.findings);
  if (!database.usable) return findings;
  const fix = options.fix && database.writable;
  try {
    findings.push(...vmBinaryFindings(env));
    findings.push(...await runtimeFindings(env, { fix }));
    findings.push(...await processFindings(env, { fix }));
    findings.push(...await frozenFindings(env, { fix }));
  } catch (err) {
    if (!(err instanceof QvmError)) throw err;
    findings.push({
      check: "database",
      status: "problem",
      what: err.message,
      why: "the checks that need qvm's VMs could not finish",
      fix: "run qvm doctor again; if this stays, see the database findings above",
    });
  }
  return findings;
}
