/**
 * Process checks that keep qvm from ever signalling a pid that is not its QEMU: a pid counts as
 * ours only while `/proc/<pid>/cmdline` carries `-uuid <id>`.
 */

/** The argv of a live process, or undefined if it is gone (or a zombie, whose cmdline is empty). */
export function readCmdline(pid: number): string[] | undefined {
  try {
    const raw = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    if (raw.length === 0) return undefined;
    return raw.split("\0").filter((part, i, all) => part !== "" || i < all.length - 1);
  } catch {
    return undefined;
  }
}

/** True if `cmdline` is a QEMU started for VM `id` (it has `-uuid <id>`). */
export function cmdlineHasUuid(cmdline: readonly string[], id: string): boolean {
  for (let i = 0; i < cmdline.length - 1; i++) {
    if (cmdline[i] === "-uuid" && cmdline[i + 1] === id) return true;
  }
  return false;
}

/** True if `pid` is alive and is the QEMU of VM `id`. */
export function isOurQemu(pid: number | null | undefined, id: string): boolean {
  if (!pid || pid <= 0) return false;
  const cmdline = readCmdline(pid);
  return cmdline !== undefined && cmdlineHasUuid(cmdline, id);
}

/** Sends `signal` to `pid` only if it is still VM `id`'s QEMU; returns whether it was sent. */
export function signalOurQemu(pid: number, id: string, signal: Deno.Signal): boolean {
  if (!isOurQemu(pid, id)) return false;
  try {
    Deno.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Reads a pid file; undefined if missing or malformed. */
export function readPidFile(path: string): number | undefined {
  try {
    const pid = Number.parseInt(Deno.readTextFileSync(path).trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Every live process whose cmdline carries `-uuid X`, as pid → uuid (for doctor and cleanup). */
export function findQemuWithUuid(): Map<number, string> {
  const found = new Map<number, string>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmdline = readCmdline(Number(entry.name));
    if (!cmdline) continue;
    const at = cmdline.indexOf("-uuid");
    if (at !== -1 && at + 1 < cmdline.length) found.set(Number(entry.name), cmdline[at + 1]);
  }
  return found;
}
