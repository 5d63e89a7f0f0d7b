/**
 * `doctor`'s checks of the VMs themselves: QEMU binaries named by their `binary:` keys, and
 * guests a live snapshot left frozen (`--fix` thaws them as any command on the VM would).
 */
import type { VmEnv } from "../env.ts";
import type { FrozenGuest } from "../freeze.ts";
import { freezeModule } from "../observe.ts";
import { findBinary } from "../start.ts";
import { DEFAULT_BINARY } from "../../qemu/launch.ts";
import { type Finding, okFinding } from "./finding.ts";

/** Binaries named by VMs' own `binary:` keys that are not there. */
export function vmBinaryFindings(env: VmEnv): Finding[] {
  const users = new Map<string, string[]>();
  for (const vm of env.store.list()) {
    const binary = vm.config.binary;
    if (!binary || binary === DEFAULT_BINARY) continue;
    users.set(binary, [...users.get(binary) ?? [], vm.name]);
  }
  return [...users].filter(([binary]) => !findBinary(binary)).map(([binary, names]) => ({
    check: "vm_binary",
    status: "problem",
    what: `QEMU binary '${binary}' of VM ${names.map((n) => `'${n}'`).join(", ")} not found`,
    why: "those VMs cannot start",
    fix: "install it, or change the VM's binary: with 'qvm apply'",
  }));
}

/** Guests whose file systems a live snapshot froze and nobody thawed (qvm was killed meanwhile). */
export async function frozenFindings(env: VmEnv, options: { fix: boolean }): Promise<Finding[]> {
  const { frozenGuests } = await freezeModule();
  const findings = (await frozenGuests(env, options)).map((g) =>
    frozenFinding(g, { fix: options.fix })
  );
  if (findings.length > 0) return findings;
  return [okFinding("frozen_guest", "no guest was left frozen by an interrupted live snapshot")];
}

/** One frozen guest: busy (its command thaws it), thawed by `--fix`, or still frozen. */
function frozenFinding(guest: FrozenGuest, options: { fix: boolean }): Finding {
  const check = "frozen_guest";
  const what = `VM '${guest.name}''s file systems are frozen`;
  if (guest.state === "busy") {
    return {
      check,
      status: "warning",
      what: `${what}, and a qvm command holds the VM (a live snapshot being taken?)`,
      why: "the command that froze them thaws them when it ends",
      fix: "run qvm doctor again when that command has finished",
    };
  }
  const why = "a live snapshot froze them and qvm was killed before the thaw: the guest's " +
    "writes hang and its agent refuses exec";
  if (guest.state === "thawed") return { check, status: "fixed", what, why, fix: "thawed" };
  return {
    check,
    status: "problem",
    what,
    why,
    fix: options.fix
      ? "the guest agent did not answer the thaw: try again, or restart the VM"
      : "qvm doctor --fix thaws them (so does any qvm command on the VM, e.g. qvm status)",
  };
}
