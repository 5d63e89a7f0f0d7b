/**
 * Starting a VM: under its lock, refuse a running VM, create missing disks, launch QEMU detached,
 * record the pid, and wait for what the caller asked (process, QMP, or text on the serial console).
 * Any failure leaves no QEMU behind, marks the VM `failed`, and carries QEMU's own message.
 */
import { dirname } from "node:path";
import type { Context } from "../cli/context.ts";
import { NotFoundError, QvmError, TimeoutError } from "../errors.ts";
import { diskFile } from "../config/mod.ts";
import type { VmRecord } from "../state/mod.ts";
import { ensurePrivateDir } from "../state/mod.ts";
import { createDiskIfMissing } from "../qemu/img.ts";
import { launchArgv } from "../qemu/launch.ts";
import { isOurQemu, readPidFile, signalOurQemu } from "../qemu/process.ts";
import { acquireLock } from "./lock.ts";
import { observe } from "./observe.ts";
import { removeQuietly, runtimeFiles, type VmPaths, vmPaths } from "./paths.ts";

/** What `start --wait-for` waits for. */
export type WaitFor = { kind: "process" } | { kind: "qmp" } | { kind: "serial"; text: string };

/** Parses a `--wait-for` value: `process`, `qmp`, or `serial:TEXT`. */
export function parseWaitFor(value: string): WaitFor | undefined {
  if (value === "process" || value === "qmp") return { kind: value };
  if (value.startsWith("serial:") && value.length > "serial:".length) {
    return { kind: "serial", text: value.slice("serial:".length) };
  }
  return undefined;
}

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

function fileSize(path: string): number {
  try {
    return Deno.statSync(path).size;
  } catch {
    return 0;
  }
}

function tailOf(path: string, lines = 8): string {
  try {
    return Deno.readTextFileSync(path).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** Kills whatever QEMU of this VM a failed start left, waiting until it is gone. */
async function killLeftover(vm: VmRecord, paths: VmPaths): Promise<void> {
  const pid = readPidFile(paths.pidFile);
  if (pid && signalOurQemu(pid, vm.id, "SIGKILL")) {
    for (let i = 0; i < 100 && isOurQemu(pid, vm.id); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  runtimeFiles(paths).forEach(removeQuietly);
}

async function waitForSerial(
  paths: VmPaths,
  check: { text: string; pid: number; id: string; deadline: number; offset: number },
): Promise<void> {
  let offset = check.offset;
  let carry = "";
  const decoder = new TextDecoder();
  while (Date.now() < check.deadline) {
    try {
      const file = await Deno.open(paths.serialLog, { read: true });
      try {
        await file.seek(offset, Deno.SeekMode.Start);
        const buf = new Uint8Array(65536);
        let n: number | null;
        while ((n = await file.read(buf)) !== null && n > 0) {
          offset += n;
          carry += decoder.decode(buf.subarray(0, n), { stream: true });
          if (carry.includes(check.text)) return;
          carry = carry.slice(-check.text.length);
        }
      } finally {
        file.close();
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    if (!isOurQemu(check.pid, check.id)) {
      throw new QvmError(`QEMU exited before '${check.text}' appeared on the serial console`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new TimeoutError(`'${check.text}' did not appear on the serial console in time`);
}

async function waitUntilReady(
  vm: VmRecord,
  paths: VmPaths,
  options: { waitFor: WaitFor; pid: number; deadline: number; serialOffset: number },
): Promise<void> {
  const { waitFor, pid, deadline } = options;
  if (waitFor.kind === "process") return;
  if (waitFor.kind === "serial") {
    const offset = options.serialOffset;
    await waitForSerial(paths, { text: waitFor.text, pid, id: vm.id, deadline, offset });
    return;
  }
  const { QmpClient } = await import("../qemu/qmp.ts");
  const client = await QmpClient.connect(paths.qmpSocket, {
    timeoutMs: Math.max(options.deadline - Date.now(), 1),
  });
  client.close();
  await client.closed;
}

/** Result of a start, for printing. */
export interface Started {
  vm: VmRecord;
  argv: string[];
  createdDisks: string[];
}

/**
 * Starts `vm` (already looked up) and waits per `waitFor` until `timeoutS` has passed. Throws a
 * QvmError (exit 1), NotFoundError (binary, exit 3) or TimeoutError (exit 2) after cleaning up.
 */
export async function startVm(
  ctx: Context,
  vm: VmRecord,
  options: { waitFor: WaitFor; timeoutS: number },
): Promise<Started> {
  const paths = vmPaths(ctx.dirs, vm.id);
  const deadline = Date.now() + options.timeoutS * 1000;
  const lock = await acquireLock(paths.lockFile, {
    timeoutMs: options.timeoutS * 1000,
    what: `VM '${vm.name}'`,
  });
  try {
    const seen = await observe(ctx, ctx.store.require(vm.id), { qmp: false, locked: true });
    vm = seen.vm;
    if (seen.status === "running") {
      throw new QvmError(`VM '${vm.name}' is already running (pid ${vm.pid})`);
    }
    return await launch(ctx, vm, { paths, deadline, waitFor: options.waitFor });
  } finally {
    lock.release();
  }
}

async function launch(
  ctx: Context,
  vm: VmRecord,
  options: { paths: VmPaths; deadline: number; waitFor: WaitFor },
): Promise<Started> {
  const { paths } = options;
  const argv = launchArgv(vm, paths);
  const fail = (reason: string) =>
    ctx.store.updateStatus(vm.id, "failed", { pid: null, stopReason: reason });
  if (!findBinary(argv[0])) {
    fail("QEMU binary not found");
    throw new NotFoundError(
      `QEMU binary '${argv[0]}' not found (install qemu-system-x86 or set binary:)`,
    );
  }
  ensurePrivateDir(ctx.dirs.runtimeDir);
  ensurePrivateDir(dirname(paths.serialLog));
  runtimeFiles(paths).forEach(removeQuietly);
  const createdDisks: string[] = [];
  ctx.store.updateStatus(vm.id, "starting", {
    pid: null,
    stopReason: null,
    qmpSocketPath: paths.qmpSocket,
  });
  try {
    for (const disk of vm.config.storage) {
      if (disk.type === "virtfs") continue;
      const file = diskFile(disk, paths.diskDir);
      if (!disk.file) ensurePrivateDir(paths.diskDir);
      if (await createDiskIfMissing(disk, file)) {
        ctx.store.addCreatedFile(vm.id, file);
        createdDisks.push(file);
      }
    }
    Deno.writeTextFileSync(paths.qemuLog, "");
    const serialOffset = fileSize(paths.serialLog);
    const child = await new Deno.Command("/bin/sh", {
      args: ["-c", 'exec "$0" "$@" 2>>"$QVM_QEMU_LOG"', ...argv],
      env: { QVM_QEMU_LOG: paths.qemuLog },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    if (!child.success) {
      const log = tailOf(paths.qemuLog);
      const first = log.split("\n").find((l) => l.trim()) ?? `exit status ${child.code}`;
      throw new QvmError(`QEMU failed to start: ${first.replace(/^[^:]*qemu[^:]*: /, "")}`, {
        detail: log.includes("\n") ? log : undefined,
      });
    }
    const pid = readPidFile(paths.pidFile);
    if (!pid || !isOurQemu(pid, vm.id)) {
      throw new QvmError(
        `QEMU exited right after starting: ${tailOf(paths.qemuLog, 1) || "no message"}`,
      );
    }
    ctx.store.updateStatus(vm.id, "running", { pid, qmpSocketPath: paths.qmpSocket });
    await waitUntilReady(vm, paths, {
      waitFor: options.waitFor,
      pid,
      deadline: options.deadline,
      serialOffset,
    });
    return { vm: ctx.store.require(vm.id), argv, createdDisks };
  } catch (err) {
    await killLeftover(vm, paths);
    fail(err instanceof QvmError ? err.message : String(err));
    throw err;
  }
}
