/** `doctor`'s check of qvm's SSH key: ssh refuses a private key others can read. */
import { checkKey } from "../../cloud/ssh.ts";
import { type Finding, okFinding } from "./finding.ts";

/** qvm's SSH key, absent or mode 0600; with `fix`, a key others can read is set back to 0600. */
export function sshKeyFinding(dataDir: string, options: { fix: boolean }): Finding {
  const check = "ssh_key";
  let found;
  try {
    found = checkKey(dataDir, options);
  } catch (err) {
    if (!(err instanceof Deno.errors.PermissionDenied)) throw err;
    found = { state: "problem" as const, what: `cannot change qvm's SSH key: ${err.message}` };
  }
  if (found.state === "ok" || found.state === "absent") return okFinding(check, found.what);
  const why = "ssh refuses a private key that is not 0600 (qvm ssh sets it back when it runs)";
  if (found.state === "fixed") {
    return { check, status: "fixed", what: found.what, why, fix: "chmod 600" };
  }
  const mode = found.what.includes("mode");
  return {
    check,
    status: "problem",
    what: found.what,
    why: mode ? why : "qvm uses only a key file of its own there",
    fix: mode
      ? "qvm doctor --fix (or chmod 600 the key)"
      : "move it away; qvm makes a new key on first need (VMs seeded with another key then " +
        "refuse it)",
  };
}
