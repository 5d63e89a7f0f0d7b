/**
 * Starting a VM: under its lock, refuse a running VM, create missing disks, launch QEMU detached,
 * record the pid, and wait for what the caller asked (process, QMP, or text on the serial console).
 * Any failure leaves no QEMU behind, marks the VM `failed`, and carries QEMU's own message.
 */
import { NotFoundError, QvmError, TimeoutError, UsageError } from "../errors.ts";
import { diskFile, type DiskStorage } from "../config/mod.ts";
import type { VmRecord } from "../state/mod.ts";
import { ensurePrivateDir } from "../state/mod.ts";
import { asidePath, createDiskIfMissing, createShareIfMissing } from "../qemu/img.ts";
import { checkConfigChains } from "../qemu/chains.ts";
import { launchArgv } from "../qemu/launch.ts";
import {
  isOurQemu,
  markersIn,
  qemuIdentity,
  qemuMessages,
  readPidFile,
  signalOurQemu,
} from "../qemu/process.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { checkQemu, faultError, kvmInUse, TCG_HINT } from "./fault.ts";

// `launch` catches a KVM fault to start the VM again under TCG.
export { KvmFaultError } from "./fault.ts";
import { warnOpenForwards } from "./define.ts";
import { withVm } from "./guard.ts";
import { FAULT_STATES, findQemuOf, isLive } from "./observe.ts";
import { withQmpSocket } from "./qmp_session.ts";
import { exists, removeQuietly, runtimeFiles, type VmPaths, vmPaths } from "../vm_files.ts";
import { SerialScanner, type WaitFor, waitReady } from "./ready.ts";
import { sizeProblem } from "./storage.ts";
import { prepareQemuFiles } from "./safe_files.ts";
import { recordSerialStart, serialLogEnd } from "./serial_start.ts";
import { cloudModule } from "../cloud/lazy.ts";
import { sleep } from "../timers.ts";

/** Finds `binary` the way a shell would; undefined if it is not there or not executable. */
export function findBinary(binary: string): string | undefined {
  const candidates = binary.includes("/")
    ? [binary]
    : (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":").filter(Boolean).map((d) =>
      `${d}/${binary}`
    );
  for (const path of candidates) {
    try {
      const info = Deno.statSync(path);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return path;
    } catch { /* next */ }
  }
  return undefined;
}

/** The last `lines` lines QEMU wrote to its log at `path`, its traces left out. */
function tailOf(path: string, lines = 8): string {
  try {
    return qemuMessages(Deno.readTextFileSync(path)).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** Kills whatever QEMU of this VM a failed start left (by pid file or by scan), until it is gone. */
async function killLeftover(env: VmEnv, vm: VmRecord, paths: VmPaths): Promise<void> {
  const markers = markersIn(env.dirs.runtimeDir, vm);
  for (let round = 0; round < 3; round++) {
    const pid = findQemuOf(env, vm.id, { fresh: true, binary: markers.binary });
    if (pid === undefined) break;
    signalOurQemu(pid, markers, "SIGKILL");
    for (let i = 0; i < 100 && isOurQemu(pid, markers); i++) {
      await sleep(20);
    }
  }
  runtimeFiles(paths).forEach(removeQuietly);
}

/**
 * QEMU's error from its log: the first line that is not a warning (nor one of qvm's traces);
 * warnings are the detail.
 */
export function qemuError(log: string): { message?: string; detail?: string } {
  const lines = qemuMessages(log).split("\n").map((l) => l.trimEnd()).filter((l) =>
    l.trim() !== ""
  );
  const strip = (line: string) => line.replace(/^[^:\s]*qemu[^:\s]*: /, "");
  const errors = lines.filter((l) => !/(^|: )warning: /i.test(l));
  const message = errors.length > 0 ? strip(errors[0]) : undefined;
  const rest = lines.filter((l) => l !== errors[0]);
  return { message, detail: rest.length > 0 ? rest.join("\n") : undefined };
}

/**
 * Creates a missing disk, recorded in the VM's created files before it is made (with the name it
 * is made under, until it is linked into place): a start killed meanwhile leaves nothing qvm made
 * unrecorded, and the next start replaces what it left. True if it created the disk.
 */
async function createRecordedDisk(
  env: VmEnv,
  vm: VmRecord,
  target: { disk: DiskStorage; file: string },
): Promise<boolean> {
  const { disk, file } = target;
  if (disk.media === "cdrom" || exists(file)) return false;
  const recorded = env.store.require(vm.id).createdFiles;
  const aside = asidePath(file);
  env.store.recordCreating(vm.id, [file, aside]);
  let created = false;
  try {
    created = await createDiskIfMissing(disk, file, { replaceAside: recorded.includes(aside) });
  } finally {
    if (!created && !recorded.includes(file)) env.store.forgetCreatedFile(vm.id, file);
    env.store.forgetCreatedFile(vm.id, aside);
  }
  return created;
}

/**
 * Refuses a disk image that is empty, or a raw one qvm made (`made`) that is shorter than its
 * `size:` (one line, exit 3).
 */
function checkDiskSize(disk: DiskStorage, file: string, options: { made: boolean }): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(file);
  } catch {
    return; // QEMU says what is wrong with a path it cannot open
  }
  const problem = sizeProblem(disk, info, options);
  if (problem === undefined) return;
  throw new UsageError(
    `disk '${disk.name}' at ${file}: ${problem}; remove it and the next start creates it anew` +
      (disk.type === "raw" ? ", or set its size: to what it is" : ""),
  );
}

/** How often a start's wait looks at its QEMU (a /proc and a log read, no QMP). */
const STATE_CHECK_MS = 250;

/**
 * Waits until the QEMU just launched (`pid`) is ready as `waitFor` says: at once (process), on
 * the QMP socket (qmp), or through the one wait loop (serial, ssh, agent), failing as soon as that
 * QEMU is gone or faulted.
 */
async function waitUntilReady(
  env: VmEnv,
  vm: VmRecord,
  options: { waitFor: WaitFor; pid: number; deadline: Deadline; serialOffset: number },
): Promise<void> {
  const { waitFor, pid, deadline } = options;
  const paths = vmPaths(env.dirs, vm.id);
  if (waitFor.kind === "process") return;
  if (waitFor.kind === "qmp") {
    // The run state is asked on the connection that waited for QMP: one handshake, not two.
    const state = await withQmpSocket(
      paths.qmpSocket,
      (client) =>
        client.execute<{ status: string }>("query-status", undefined, { timeoutMs: 500 })
          .then((s) => s.status, () => undefined),
      { timeoutMs: Math.max(deadline.remainingMs(), 1) },
    );
    if (state !== undefined && FAULT_STATES.has(state)) {
      throw faultError(state, await kvmInUse(paths));
    }
    return;
  }
  const scanner = waitFor.kind === "serial"
    ? new SerialScanner(paths.serialLog, waitFor.text, options.serialOffset)
    : undefined;
  const gone = scanner
    ? `QEMU exited before '${scanner.text}' appeared on the serial console`
    : `QEMU exited before the guest answered over ${waitFor.kind}`;
  await waitReady(env, {
    spec: waitFor,
    deadline,
    scanner,
    watch: {
      lookMs: STATE_CHECK_MS,
      look: async () => {
        await checkQemu(env, vm, { pid, gone });
        return { live: true, running: vm };
      },
      guestCheck: () => checkQemu(env, vm, { pid, gone }),
      timedOut: async () => {
        let hint = "";
        if (scanner && scanner.offset === scanner.from && await kvmInUse(paths)) {
          hint =
            `: the guest printed nothing under KVM; if KVM does not work on this host, ${TCG_HINT}`;
        }
        return new TimeoutError(
          `'${scanner?.text}' did not appear on the serial console in time${hint}`,
        );
      },
    },
  });
}

/** What a start is doing, for a caller that shows progress: creating a disk, or waiting. */
export type StartProgress =
  | { step: "disk"; file: string }
  | { step: "wait"; waitFor: WaitFor; serialOffset: number; pid: number };

/** Options of a start: what to wait for, until when, and who hears about progress. */
export interface StartOptions {
  waitFor: WaitFor;
  deadline: Deadline;
  onProgress?: (progress: StartProgress) => void;
}

/** Result of a start, for printing. */
export interface Started {
  vm: VmRecord;
  argv: string[];
  createdDisks: string[];
}

/**
 * Starts `vm` (already looked up) and waits per `waitFor` until `deadline`. Throws a QvmError
 * (exit 1), NotFoundError (binary, exit 3) or TimeoutError (exit 2) after cleaning up. A QEMU of
 * this VM that is already there (even one the database lost track of) is adopted, never doubled.
 */
export function startVm(
  env: VmEnv,
  vm: VmRecord,
  options: StartOptions,
): Promise<Started> {
  return withVm(env, vm, { deadline: options.deadline }, (seen) => {
    if (isLive(seen.status)) {
      throw new QvmError(`VM '${seen.vm.name}' is already running (pid ${seen.vm.pid})`);
    }
    const paths = vmPaths(env.dirs, vm.id);
    return launch(env, seen.vm, { ...options, paths });
  });
}

/** The QEMU command line a start of `vm` would run (`start --dry-run`); starts nothing. */
export async function previewArgv(env: VmEnv, vm: VmRecord): Promise<string[]> {
  const argv = launchArgv(vm, vmPaths(env.dirs, vm.id));
  const { image, network, cloud_init, guest_agent } = vm.config;
  if (image || network || cloud_init || guest_agent) {
    argv.push(...(await cloudModule()).cloudArgvPreview(env, vm));
  }
  return argv;
}

/**
 * Launches `vm`, which the caller holds the lock of (`withVm`) and has seen not running: what
 * `startVm` does under the lock, for commands that do more under the same lock (`restart`).
 */
export async function launch(
  env: VmEnv,
  vm: VmRecord,
  options: StartOptions & { paths: VmPaths },
): Promise<Started> {
  const { paths } = options;
  if (options.waitFor.kind === "ssh" || options.waitFor.kind === "agent") {
    // A wait that cannot succeed is bad input: refused before QEMU is launched.
    (await cloudModule()).checkWaitable(vm, options.waitFor.kind);
  }
  // The images may have changed since the VM was defined: their chains are read again.
  await checkConfigChains(vm.config, paths.diskDir);
  warnOpenForwards(env, vm.config);
  const argv = launchArgv(vm, paths);
  const { image, network, cloud_init, guest_agent } = vm.config;
  if (image || network || cloud_init || guest_agent) {
    argv.push(...await (await cloudModule()).prepareCloud(env, vm));
  }
  const fail = (reason: string) =>
    env.store.updateStatus(vm.id, "failed", { pid: null, stopReason: reason });
  if (!findBinary(argv[0])) {
    fail("QEMU binary not found");
    throw new NotFoundError(
      `QEMU binary '${argv[0]}' not found (install qemu-system-x86 or set binary:)`,
    );
  }
  ensurePrivateDir(env.dirs.runtimeDir);
  ensurePrivateDir(paths.serialLog.slice(0, paths.serialLog.lastIndexOf("/")));
  runtimeFiles(paths).forEach(removeQuietly);
  const createdDisks: string[] = [];
  env.store.updateStatus(vm.id, "starting", {
    pid: null,
    stopReason: null,
    qmpSocketPath: paths.qmpSocket,
  });
  try {
    for (const disk of vm.config.storage) {
      if (disk.type === "virtfs") {
        createShareIfMissing(disk);
        continue;
      }
      const file = diskFile(disk, paths.diskDir);
      if (!disk.file) ensurePrivateDir(paths.diskDir, { within: env.dirs.dataDir });
      options.onProgress?.({ step: "disk", file });
      if (await createRecordedDisk(env, vm, { disk, file })) createdDisks.push(file);
      else checkDiskSize(disk, file, { made: vm.createdFiles.includes(file) });
    }
    prepareQemuFiles(paths);
    const serialOffset = serialLogEnd(paths);
    recordSerialStart(paths, serialOffset);
    const child = await new Deno.Command("/bin/sh", {
      args: ["-c", 'exec "$0" "$@" 2>>"$QVM_QEMU_LOG"', ...argv],
      env: { QVM_QEMU_LOG: paths.qemuLog },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    if (!child.success) {
      const { message, detail } = qemuError(tailOf(paths.qemuLog, 20));
      throw new QvmError(`QEMU failed to start: ${message ?? `exit status ${child.code}`}`, {
        detail,
      });
    }
    const pid = readPidFile(paths.pidFile);
    const identity = pid ? qemuIdentity(pid, markersIn(env.dirs.runtimeDir, vm)) : undefined;
    if (!pid || !identity) {
      throw new QvmError(
        `QEMU exited right after starting: ${tailOf(paths.qemuLog, 1) || "no message"}`,
      );
    }
    env.store.updateStatus(vm.id, "running", {
      pid,
      pidStart: identity.start,
      qmpSocketPath: paths.qmpSocket,
    });
    options.onProgress?.({ step: "wait", waitFor: options.waitFor, serialOffset, pid });
    await waitUntilReady(env, vm, {
      waitFor: options.waitFor,
      pid,
      deadline: options.deadline,
      serialOffset,
    });
    return { vm: env.store.require(vm.id), argv, createdDisks };
  } catch (err) {
    await killLeftover(env, vm, paths);
    fail(err instanceof QvmError ? err.message : String(err));
    throw err;
  }
}
