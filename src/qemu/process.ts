/**
 * Process checks that keep qvm from ever signalling a pid that is not its QEMU. A pid counts as
 * VM `id`'s QEMU only while all of these hold:
 * - it is alive and not a zombie (`/proc/<pid>/stat` state is not Z or X);
 * - its executable, read from the `/proc/<pid>/exe` link (which, unlike argv[0], a process cannot
 *   fake), is a QEMU binary: the VM's configured binary, or one named `qemu-system-*` or
 *   `qemu-kvm` where programs are installed (see `isQemuExe`), and owned by root or the current
 *   user (another user's copy, or a renamed copy of another program, is not a QEMU of ours);
 * - its argv has `-uuid` followed by exactly `id` (the last `-uuid` wins, as in QEMU).
 * When the exe link cannot be read (another user's process we may not inspect), the process is
 * not ours: QEMU runs as the user who ran qvm, so qvm can always read its own QEMU's link, and
 * argv[0] alone is never trusted.
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

/** The `-uuid` a QEMU argv carries (the last one, as QEMU takes the last), or undefined. */
export function cmdlineUuid(cmdline: readonly string[]): string | undefined {
  let uuid: string | undefined;
  for (let i = 1; i < cmdline.length - 1; i++) {
    if (cmdline[i] === "-uuid" || cmdline[i] === "--uuid") uuid = cmdline[++i];
  }
  return uuid;
}

/** True if `cmdline` is a QEMU started for VM `id`: its `-uuid` is exactly `id`. */
export function cmdlineHasUuid(cmdline: readonly string[], id: string): boolean {
  return cmdlineUuid(cmdline) === id;
}

/** The executable of a live process (`/proc/<pid>/exe`), or undefined if it cannot be read. */
export function readExe(pid: number): string | undefined {
  try {
    // A binary replaced on disk (a package upgrade) shows as "PATH (deleted)".
    return Deno.readLinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, "");
  } catch {
    return undefined;
  }
}

/** True if `pid` exists and is not a zombie (a dead process its parent has not reaped yet). */
export function isLive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X" && state !== "x";
  } catch {
    return false;
  }
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function realPath(path: string): string | undefined {
  try {
    return Deno.realPathSync(path);
  } catch {
    return undefined;
  }
}

/** The real paths of the folders programs are installed in: PATH's and the usual system ones. */
let installed: Set<string> | undefined;
function installedDirs(): Set<string> {
  if (!installed) {
    installed = new Set();
    const dirs = [...pathDirs(), "/usr/bin", "/usr/local/bin", "/usr/libexec", "/usr/lib/qemu"];
    for (const dir of dirs) {
      const real = realPath(dir);
      if (real) installed.add(real);
    }
  }
  return installed;
}

function pathDirs(): string[] {
  return (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":").filter((d) => d.startsWith("/"));
}

function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/** `binary` (a path, or a name looked up on PATH) as the real path of the file it runs. */
function resolveBinary(binary: string): string | undefined {
  if (binary.includes("/")) return realPath(binary);
  for (const dir of pathDirs()) {
    const real = realPath(`${dir}/${binary}`);
    if (real) return real;
  }
  return undefined;
}

/**
 * True if `exe` (an absolute, resolved path) is a QEMU binary: the VM's configured `binary` (a
 * path, or a name on PATH) itself; or a program named `qemu-system-*` or `qemu-kvm` installed
 * where programs are installed (PATH's folders, /usr/libexec, ...), or beside the program a PATH
 * entry of that name resolves to, or beside the configured binary (wrappers such as Nix's exec
 * `.qemu-system-x86_64-wrapped` from their own folder). A copy of some other program renamed
 * `qemu-system-x86_64` in a folder of its own is not a QEMU.
 */
export function isQemuExe(exe: string, binary?: string): boolean {
  const configured = binary ? resolveBinary(binary) : undefined;
  if (configured === exe) return true;
  const name = basename(exe);
  if (!/^\.?qemu-system-[\w.+-]+$/.test(name) && name !== "qemu-kvm") return false;
  const dir = dirOf(exe);
  if (installedDirs().has(dir)) return true;
  if (configured && dirOf(configured) === dir) return true;
  // Nix-style: PATH's qemu-system-x86_64 resolves to a wrapper beside `.qemu-system-...-wrapped`.
  const plain = name.replace(/^\./, "").replace(/-wrapped$/, "");
  const onPath = resolveBinary(plain);
  return onPath !== undefined && dirOf(onPath) === dir;
}

/** True if the file `pid` runs (even one since deleted) belongs to root or the current user. */
function trustedExe(pid: number): boolean {
  try {
    const owner = Deno.statSync(`/proc/${pid}/exe`).uid;
    return owner === null || owner === 0 || owner === Deno.uid();
  } catch {
    return false;
  }
}

/**
 * True if `pid` is alive (not a zombie), runs a QEMU binary (by its exe link; `binary` is the VM's
 * configured one, if any) and carries `-uuid` exactly `id`.
 */
export function isOurQemu(pid: number | null | undefined, id: string, binary?: string): boolean {
  if (!pid || !Number.isInteger(pid) || pid <= 0) return false;
  const exe = readExe(pid);
  if (exe === undefined || !isQemuExe(exe, binary) || !trustedExe(pid)) return false;
  const cmdline = readCmdline(pid);
  return cmdline !== undefined && cmdlineHasUuid(cmdline, id) && isLive(pid);
}

/** Sends `signal` to `pid` only if it is still VM `id`'s QEMU; returns whether it was sent. */
export function signalOurQemu(
  pid: number,
  id: string,
  signal: Deno.Signal,
  binary?: string,
): boolean {
  if (!isOurQemu(pid, id, binary)) return false;
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

/**
 * Every live QEMU process (by its exe link, as in `isOurQemu`; `binaries` adds VMs' configured
 * ones) that carries a `-uuid`, as pid → uuid (for doctor and cleanup).
 */
export function findQemuWithUuid(binaries: readonly string[] = []): Map<number, string> {
  const found = new Map<number, string>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    const exe = readExe(pid);
    if (exe === undefined) continue;
    if (!isQemuExe(exe) && !binaries.some((binary) => isQemuExe(exe, binary))) continue;
    if (!trustedExe(pid)) continue;
    const cmdline = readCmdline(pid);
    const uuid = cmdline && cmdlineUuid(cmdline);
    if (uuid !== undefined && isLive(pid)) found.set(pid, uuid);
  }
  return found;
}
