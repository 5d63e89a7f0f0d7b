/** Test helpers for real guests: a VM config for the cached test guest, and a QEMU reaper. */
import { ensureGuest, GUEST_READY_MARKER } from "../fixture/mod.ts";
import { pidsMentioning, type QvmEnv } from "./qvm.ts";

export { pidsMentioning };

export { GUEST_READY_MARKER };

/** `start` flags that wait until the guest has booted. */
/**
 * A VM that is only a QEMU process: `-machine none` under TCG, 16 MiB, no devices. It boots
 * nothing, so a test can run many of them (or wait for no guest) and still have real QEMUs.
 */
export const MACHINE_NONE =
  "memory: 16M\narguments:\n  - machine: none\n  - accel: tcg\n  - nodefaults\n";

export const WAIT_READY = ["--wait-for", `serial:${GUEST_READY_MARKER}`, "--timeout", "60"];

/** Writes a YAML config for the test guest (TCG; `acpi: false` ignores power-off) and returns its path. */
export async function guestConfig(
  env: QvmEnv,
  options: { name: string; acpi?: boolean; extra?: string },
): Promise<string> {
  const guest = await ensureGuest();
  const initrd = options.acpi === false ? guest.initrdNoAcpi : guest.initrdAcpi;
  const yaml = [
    `name: ${options.name}`,
    "memory: 192M",
    "arguments:",
    "  - accel: tcg",
    `  - kernel: ${guest.kernel}`,
    `  - initrd: ${initrd}`,
    `  - append: "${guest.append}"`,
    "  - no-reboot",
    options.extra ?? "",
  ].join("\n");
  return await env.file(`${options.name}.yaml`, yaml);
}

/** True if `pid` is alive (and not a zombie). */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** QEMU's ShutdownCause for a shutdown the guest asked for (an ACPI power-off it answered). */
export const GUEST_SHUTDOWN = 6;

/**
 * The causes of the shutdown requests QEMU traced to VM `id`'s log (`-D`, where qvm enables
 * `qemu_system_shutdown_request`): the guest's own power-off is GUEST_SHUTDOWN, a QMP quit 2.
 */
export async function shutdownCauses(env: QvmEnv, id: string): Promise<number[]> {
  const log = await Deno.readTextFile(`${env.dataDir}/logs/${id}.qemu.log`);
  return [...log.matchAll(/qemu_system_shutdown_request reason=(\d+)/g)].map((m) => Number(m[1]));
}
