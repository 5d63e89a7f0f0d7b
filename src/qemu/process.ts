/**
 * Process checks that keep qvm from ever signalling a pid that is not its QEMU. A pid counts as
 * VM `id`'s QEMU only while all of these hold:
 * - it is alive and not a zombie, and runs as the current user (real and effective uid), both
 *   read from `/proc/<pid>/status` (which, unlike the owner of `/proc/<pid>`, a process cannot
 *   change by making itself non-dumpable);
 * - its argv carries qvm's own runtime markers for the VM: `-uuid` exactly `id` (the last one
 *   wins, as in QEMU), `-pidfile` the VM's pid file and a `-qmp unix:` the VM's QMP socket, both in
 *   the runtime dir of this qvm (`QemuMarkers`). The `-uuid` alone is visible to every user in
 *   `ps`: another user's process, or a QEMU libvirt runs for a VM exported to it, may carry it too;
 * - its executable, read from the `/proc/<pid>/exe` link (which, unlike argv[0], a process cannot
 *   fake), is a QEMU binary: the VM's configured binary, or one named `qemu-system-*` or
 *   `qemu-kvm` where programs are installed (see `isQemuExe`), and owned by root or the current
 *   user (another user's copy, or a renamed copy of another program, is not a QEMU of ours).
 * Anything else is never signalled, never counts as the VM running, and `doctor` names it.
 *
 * A pid qvm verified by all of these is recorded with the process's start time (`qemuIdentity`);
 * while the same pid has that start time it is the same process, so it is known as the VM's QEMU
 * from one read of `/proc/<pid>/stat` (`QemuMarkers.known`). A pid is not reused until its
 * process is gone, and a new process at that pid starts later.
 */
import { runtimeFile } from "../vm_files.ts";

/**
 * What marks a QEMU as the one qvm started for a VM: the VM's id and the runtime files qvm
 * launched it with (see `markersIn`).
 */
export interface QemuMarkers {
  /** The VM's id: the QEMU's `-uuid`. */
  id: string;
  /** The pid file qvm passes as `-pidfile`. */
  pidFile: string;
  /** The QMP socket qvm passes as `-qmp unix:PATH,...`. */
  qmpSocket: string;
  /** The VM's configured QEMU binary, if it names one. */
  binary?: string;
  /** The pid qvm verified as the VM's QEMU and recorded, with its start time (see above). */
  known?: { pid: number; start: number };
}

/** What `/proc/<pid>/stat` says of a process: its state letter and its start time. */
export interface ProcStat {
  /** `R`, `S`, `D`, `T` (stopped by a signal), `Z` (a zombie), ... */
  state: string;
  /** When it started, in clock ticks since boot (field 22). */
  start: number;
}

/** Fields 3 (the state) to 22 (the start time) of `/proc/<pid>/stat`, after the name's `)`. */
const STAT_FIELDS = /^\) (\S) (?:\S+ ){18}(\d+) /;

/** `/proc/<pid>/stat` of a process (one read), or undefined if it is gone. */
export function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The name (field 2) is in parentheses and may hold spaces or parentheses: count from the last.
  const fields = STAT_FIELDS.exec(text.slice(text.lastIndexOf(")")));
  return fields ? { state: fields[1], start: Number(fields[2]) } : undefined;
}

/**
 * The markers of VM `vm`'s QEMU under `runtimeDir`: the pid file and QMP socket qvm launches it
 * with, named by the file layout (`src/vm_files.ts`), and the pid its row records with the start
 * time qvm verified it at (`known`), so layers below `vm/` can check a QEMU's identity too.
 */
export function markersIn(
  runtimeDir: string,
  vm: { id: string; config?: { binary?: string }; pid?: number | null; pidStart?: number | null },
): QemuMarkers {
  const markers: QemuMarkers = {
    id: vm.id,
    pidFile: runtimeFile({ runtimeDir }, { id: vm.id, kind: "pid" }),
    qmpSocket: runtimeFile({ runtimeDir }, { id: vm.id, kind: "qmp" }),
    binary: vm.config?.binary,
  };
  if (vm.pid && vm.pidStart !== undefined && vm.pidStart !== null) {
    markers.known = { pid: vm.pid, start: vm.pidStart };
  }
  return markers;
}

let procBuffer = new Uint8Array(16384);
const decoder = new TextDecoder();

/**
 * A /proc file's text, or undefined if it cannot be read (the process is gone). Read into one
 * reused buffer until its end: /proc files report no size, and `readTextFileSync` spends two
 * more calls (a stat, a read of nothing) and a fresh buffer on each. `ls` reads two per VM.
 */
function readProc(path: string): string | undefined {
  let file: Deno.FsFile | undefined;
  try {
    file = Deno.openSync(path, { read: true });
    let size = 0;
    for (;;) {
      if (size === procBuffer.length) {
        const larger = new Uint8Array(procBuffer.length * 2);
        larger.set(procBuffer);
        procBuffer = larger;
      }
      const n = file.readSync(procBuffer.subarray(size));
      if (n === null || n === 0) break;
      size += n;
    }
    return decoder.decode(procBuffer.subarray(0, size));
  } catch {
    return undefined;
  } finally {
    file?.close();
  }
}

/** The argv of a live process, or undefined if it is gone (or a zombie, whose cmdline is empty). */
export function readCmdline(pid: number): string[] | undefined {
  const raw = readProc(`/proc/${pid}/cmdline`);
  if (!raw) return undefined;
  return raw.split("\0").filter((part, i, all) => part !== "" || i < all.length - 1);
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

/** The text before the first lone comma of QEMU option text (`,,` is a literal comma). */
function firstOptionPart(text: string): string {
  let part = "";
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== ",") part += text[i];
    else if (text[i + 1] === ",") part += text[++i];
    else break;
  }
  return part;
}

/**
 * True if `cmdline` carries qvm's runtime markers for a VM: `-uuid` exactly `markers.id`, the
 * last `-pidfile` exactly its pid file, and a `-qmp` on its QMP socket. Pure (a QEMU libvirt
 * started carries the uuid but none of qvm's files).
 */
export function cmdlineHasMarkers(cmdline: readonly string[], markers: QemuMarkers): boolean {
  if (cmdlineUuid(cmdline) !== markers.id) return false;
  let pidFile: string | undefined;
  let qmp = false;
  for (let i = 1; i < cmdline.length - 1; i++) {
    const option = cmdline[i].startsWith("--") ? cmdline[i].slice(1) : cmdline[i];
    if (option === "-pidfile") pidFile = cmdline[++i];
    else if (option === "-qmp" && firstOptionPart(cmdline[++i]) === `unix:${markers.qmpSocket}`) {
      qmp = true;
    }
  }
  return qmp && pidFile === markers.pidFile;
}

/** What `/proc/<pid>/status` says of a process: its real and effective uid and its state letter. */
interface ProcStatus {
  uid: number;
  euid: number;
  state: string;
}

/** `/proc/<pid>/status` of a process, or undefined if it is gone. */
function readStatus(pid: number): ProcStatus | undefined {
  const text = readProc(`/proc/${pid}/status`);
  if (text === undefined) return undefined;
  const state = /\nState:\s+(\S)/.exec(text)?.[1];
  const uids = /\nUid:\s+(\d+)\s+(\d+)/.exec(text);
  if (state === undefined || !uids) return undefined;
  return { uid: Number(uids[1]), euid: Number(uids[2]), state };
}

/** True for the state letters of a process that is gone but not yet reaped. */
export function isDeadState(state: string): boolean {
  return state === "Z" || state === "X" || state === "x";
}

/** True for a process stopped by a signal (SIGSTOP, a debugger): it answers nothing, QMP included. */
export function isStoppedState(state: string | undefined): boolean {
  return state === "T" || state === "t";
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
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === undefined) return false;
  return !isDeadState(stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3));
}

/** The file names of QEMU system emulators (`.NAME-wrapped` is a Nix wrapper's real binary). */
const QEMU_NAME = /^(\.?qemu-system-[\w.+-]+|qemu-kvm)$/;

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
  if (!QEMU_NAME.test(name)) return false;
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
    return owner === null || owner === 0 || owner === ownUid();
  } catch {
    return false;
  }
}

let uid: number | undefined;

/** The current user's uid (0 where the platform has none). */
function ownUid(): number {
  return uid ??= Deno.uid() ?? 0;
}

/**
 * The `/proc` state letter (`S`, `R`, `T` for stopped by a signal, ...) of `pid` if it is VM
 * `markers.id`'s live QEMU by every rule above, else undefined.
 */
export function ourQemuState(
  pid: number | null | undefined,
  markers: QemuMarkers,
): string | undefined {
  if (!pid || !Number.isInteger(pid) || pid <= 0) return undefined;
  if (markers.known?.pid === pid) {
    const stat = readProcStat(pid);
    if (stat?.start === markers.known.start && !isDeadState(stat.state)) return stat.state;
  }
  const status = readStatus(pid);
  if (!status || status.uid !== ownUid() || status.euid !== ownUid()) return undefined;
  if (isDeadState(status.state)) return undefined;
  const cmdline = readCmdline(pid);
  if (cmdline === undefined || !cmdlineHasMarkers(cmdline, markers)) return undefined;
  const exe = readExe(pid);
  if (exe === undefined || !isQemuExe(exe, markers.binary) || !trustedExe(pid)) return undefined;
  return status.state;
}

/**
 * The state letter and start time of `pid` if it is VM `markers.id`'s live QEMU by every rule
 * above (never by a `known` record), else undefined: what qvm records with a pid it verified.
 * The start time is read before and after the checks, so it is the checked process's.
 */
export function qemuIdentity(pid: number, markers: QemuMarkers): ProcStat | undefined {
  const before = readProcStat(pid);
  const state = ourQemuState(pid, { ...markers, known: undefined });
  const after = readProcStat(pid);
  if (!before || state === undefined || after?.start !== before.start) return undefined;
  return { state, start: before.start };
}

/** True if `pid` is VM `markers.id`'s live QEMU: ours by uid, runtime markers and executable. */
export function isOurQemu(pid: number | null | undefined, markers: QemuMarkers): boolean {
  return ourQemuState(pid, markers) !== undefined;
}

/** Sends `signal` to `pid` only if it is still VM `markers.id`'s QEMU; returns whether it was sent. */
export function signalOurQemu(pid: number, markers: QemuMarkers, signal: Deno.Signal): boolean {
  if (!isOurQemu(pid, markers)) return false;
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

/** A live QEMU process carrying a `-uuid`, whoever runs it (see `findQemuWithUuid`). */
export interface QemuProcess {
  pid: number;
  /** Its `-uuid`. */
  uuid: string;
  /** The real uid it runs as. */
  uid: number;
  cmdline: string[];
}

/**
 * Every live QEMU process that carries a `-uuid`, of any user: a QEMU by its exe link (as in
 * `isOurQemu`; `binaries` adds VMs' configured ones), or, where the link cannot be read (another
 * user's process, for a user other than root), by the name of its argv[0]. For doctor and
 * cleanup, which tell qvm's own (`isOurQemu`) from the rest: nothing listed here is ours as such.
 */
export function findQemuWithUuid(binaries: readonly string[] = []): QemuProcess[] {
  const found: QemuProcess[] = [];
  for (const { pid, uuid, cmdline } of qemuCandidates(binaries)) {
    const status = readStatus(pid);
    if (!status || isDeadState(status.state)) continue;
    found.push({ pid, uuid, uid: status.uid, cmdline });
  }
  return found;
}

/**
 * The pid and `-uuid` of every process `findQemuWithUuid` would list, without reading each one's
 * status (zombies and other users' included): for a caller that checks the one it picks with
 * `isOurQemu`. A third cheaper per QEMU, which counts when hundreds run.
 */
export function findQemuUuids(binaries: readonly string[] = []): { pid: number; uuid: string }[] {
  return qemuCandidates(binaries).map(({ pid, uuid }) => ({ pid, uuid }));
}

/** The processes that look like QEMUs (see `findQemuWithUuid`) and carry a `-uuid`. */
function qemuCandidates(
  binaries: readonly string[],
): { pid: number; uuid: string; cmdline: string[] }[] {
  const found: { pid: number; uuid: string; cmdline: string[] }[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    const exe = readExe(pid);
    if (exe !== undefined && !isQemuExe(exe) && !binaries.some((b) => isQemuExe(exe, b))) continue;
    const cmdline = readCmdline(pid);
    if (cmdline === undefined) continue;
    // A process whose exe link we may not read is not ours; it is listed if named like QEMU.
    if (exe === undefined && !QEMU_NAME.test(basename(cmdline[0] ?? ""))) continue;
    const uuid = cmdlineUuid(cmdline);
    if (uuid !== undefined) found.push({ pid, uuid, cmdline });
  }
  return found;
}

/** A line of the traces qvm has QEMU write to its log (`launch.ts`): records for qvm, not messages. */
const TRACE_LINE = /^(\d+@[\d.]+:)?(qemu_system_shutdown_request|runstate_set) /;

/** `log` (QEMU's log text) without the trace lines qvm asked for: what QEMU itself said. */
export function qemuMessages(log: string): string {
  return log.split("\n").filter((line) => !TRACE_LINE.test(line)).join("\n");
}

/** How much of a QEMU log's end `logRunState` reads: many run-state lines, never the whole log. */
const RUN_STATE_TAIL_BYTES = 4096;
const RUN_STATE_LINE = "runstate_set current_run_state ";
const RUN_STATE_NEW =
  /^runstate_set current_run_state \d+ \([\w-]+\) new_state \d+ \(([\w-]+)\)\r?\n/;

/**
 * QEMU's run state (`running`, `paused`, `internal-error`, ...) from the last `runstate_set`
 * trace line in its `-D` log, reading at most the last 4 KiB. qvm starts QEMU with that trace
 * (QEMU writes it on every run-state change, whoever caused it) and a fresh log per run, so this
 * costs no QMP round trip. Undefined when the log holds no such line (a QEMU started without the
 * trace, or one still starting): ask QMP then.
 */
export function logRunState(log: string): string | undefined {
  let file: Deno.FsFile | undefined;
  try {
    file = Deno.openSync(log, { read: true });
    const buffer = new Uint8Array(RUN_STATE_TAIL_BYTES);
    let got = readFull(file, buffer);
    if (got === buffer.length) {
      // Longer than the tail: read its last 4 KiB (a log is most often far shorter).
      file.seekSync(-RUN_STATE_TAIL_BYTES, Deno.SeekMode.End);
      got = readFull(file, buffer);
    }
    const text = decoder.decode(buffer.subarray(0, got));
    // The last complete line wins; one QEMU is still writing may be cut short.
    for (let at = text.lastIndexOf(RUN_STATE_LINE); at !== -1;) {
      const state = RUN_STATE_NEW.exec(text.slice(at))?.[1];
      if (state !== undefined) return state;
      at = at === 0 ? -1 : text.lastIndexOf(RUN_STATE_LINE, at - 1);
    }
    return undefined;
  } catch {
    return undefined;
  } finally {
    file?.close();
  }
}

/** Reads `file` into `buffer` until it is full or the file ends; returns the bytes read. */
function readFull(file: Deno.FsFile, buffer: Uint8Array): number {
  let got = 0;
  while (got < buffer.length) {
    const n = file.readSync(buffer.subarray(got));
    if (n === null || n === 0) break;
    got += n;
  }
  return got;
}
