/**
 * Cloning a stopped VM, under its lock: a new VM with its config under a new name and disks of its
 * own. A full clone copies what the source's disks hold now into the new VM's disk folder
 * (`qemu-img convert`: sparse; an overlay stays an overlay of the same backing file, the root
 * overlay of `image:` too); a linked clone gets new overlays and new empty disks at its first
 * start. No disk is ever shared (virtfs shares are host folders, and stay shared): a writable
 * file the config's QEMU options name is refused, and fixed host ports become `auto`. An
 * interrupted or failed copy leaves no clone and no copies behind.
 */
import { QvmError, UsageError } from "../errors.ts";
import { diskFile, type DiskStorage, type PortForward, type VmConfig } from "../config/mod.ts";
import { convertImage, createAside, qemuImg } from "../qemu/img.ts";
import { optionFiles } from "../qemu/reach.ts";
import { ensurePrivateDir, type VmRecord } from "../state/mod.ts";
import { withSignalsHeld } from "../signals.ts";
import { sleep } from "../timers.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { withVm } from "./guard.ts";
import { isLive } from "./observe.ts";
import { exists, removeQuietly, ROOT_DRIVE, vmPaths } from "../vm_files.ts";
import { storageWithRoot } from "./storage.ts";

/** A full clone's copy of one disk as it runs. */
export interface CloneProgress {
  /** The storage name (`qvm-root` for the overlay of `image:`). */
  disk: string;
  /** Which copy this is (1-based) of `count`. */
  index: number;
  count: number;
  percent: number;
}

/** What to clone into and how. */
export interface CloneOptions {
  name: string;
  /** New overlays and empty disks at first start instead of copies. */
  linked?: boolean;
  deadline: Deadline;
  onProgress?: (progress: CloneProgress) => void;
}

/** One disk a full clone copied. */
export interface CopiedDisk {
  disk: string;
  from: string;
  to: string;
}

/** What a clone made. */
export interface Cloned {
  vm: VmRecord;
  copied: CopiedDisk[];
  /** Forwards with a fixed host port, which the clone has as `auto`. */
  autoPorts: PortForward[];
}

interface PlannedCopy extends CopiedDisk {
  format: string;
}

function readOnly(disk: DiskStorage): boolean {
  return disk.media === "cdrom" || /^(on|true|yes)$/i.test(disk.options?.readonly ?? "");
}

/** Refuses a source whose QEMU options name a file QEMU writes: both VMs would write it. */
function refuseSharedOptionFiles(source: VmRecord): void {
  const shared = optionFiles(source.config).find((f) => f.writable);
  if (shared === undefined) return;
  const what = shared.disk ? "writable disk" : "file QEMU writes";
  throw new UsageError(
    `cannot clone '${source.name}': its option -${shared.option} names the ${what} ` +
      `${shared.path}, which the clone would share (make it a storage item, which clone copies` +
      `${shared.disk ? ", or read-only" : ""})`,
  );
}

/**
 * The clone's config and the copies to make: a full clone's disks move into its own folder (a
 * fixed `file:` is dropped), read-only ones stay shared; a linked clone refuses a writable disk
 * with a fixed `file:`, which it would share.
 */
function plan(
  env: VmEnv,
  source: VmRecord,
  options: { id: string; name: string; linked: boolean },
): { config: VmConfig; copies: PlannedCopy[]; autoPorts: PortForward[] } {
  const config: VmConfig = { ...structuredClone(source.config), name: options.name };
  const autoPorts = config.network?.ports.filter((p) => p.host !== "auto") ?? [];
  if (config.network) {
    config.network.ports = config.network.ports.map((p) => ({ ...p, host: "auto" as const }));
  }
  const sourceDir = vmPaths(env.dirs, source.id).diskDir;
  const target = vmPaths(env.dirs, options.id);
  const copies: PlannedCopy[] = [];
  for (const disk of storageWithRoot(source, env.dirs)) {
    if (disk.type === "virtfs" || readOnly(disk)) continue;
    const root = disk.name === ROOT_DRIVE;
    if (options.linked) {
      if (!root && disk.file !== undefined) {
        throw new UsageError(
          `cannot clone '${source.name}' linked: its disk '${disk.name}' is the fixed file ` +
            `${disk.file}, which the clone would share (a full clone copies it)`,
        );
      }
      continue;
    }
    const item = config.storage.find((s) => s.name === disk.name);
    if (item && item.type !== "virtfs") delete item.file; // the clone's own copy, in its folder
    const from = diskFile(disk, sourceDir);
    if (!exists(from, { follow: true })) continue; // never made: the clone makes its own
    const to = root ? target.rootOverlay : diskFile({ ...disk, file: undefined }, target.diskDir);
    copies.push({ disk: disk.name, from, to, format: disk.type });
  }
  return { config, copies, autoPorts };
}

/** How long a disk may stay locked by a QEMU that was stopped a moment ago and is still exiting. */
const EXITING_QEMU_MS = 5000;

/**
 * `qemu-img info` of the disk without -U: a disk some QEMU writes is refused, not copied half
 * written. A lock held by the source's own QEMU, stopped a moment ago and still exiting, is
 * waited out for a few seconds.
 */
async function infoUnlocked(copy: PlannedCopy): Promise<string> {
  const deadline = Date.now() + EXITING_QEMU_MS;
  for (;;) {
    try {
      return await qemuImg(["info", "--output=json", "-f", copy.format, "--", copy.from]);
    } catch (err) {
      if (!(err instanceof QvmError) || !/Failed to get .*lock/.test(err.message)) throw err;
      if (Date.now() >= deadline) {
        throw new QvmError(
          `cannot copy disk '${copy.disk}': ${copy.from} is in use by another process (a ` +
            "running VM that shares it?)",
          { detail: err.detail },
        );
      }
      await sleep(200);
    }
  }
}

/** Copies one disk into place (made aside, linked in whole), over the backing file it has. */
async function copyDisk(
  copy: PlannedCopy,
  options: { signal: AbortSignal; onProgress: (percent: number) => void },
): Promise<void> {
  const info = JSON.parse(await infoUnlocked(copy));
  const backing = info["full-backing-filename"] ?? info["backing-filename"];
  const made = await createAside(copy.to, {
    what: `a copy of disk '${copy.disk}'`,
    make: (aside) =>
      convertImage(copy.from, aside, {
        format: copy.format,
        ...(typeof backing === "string" ? { backing } : {}),
        ...(typeof info["backing-filename-format"] === "string"
          ? { backingFormat: info["backing-filename-format"] }
          : {}),
        onProgress: options.onProgress,
        signal: options.signal,
      }),
  });
  if (!made) throw new QvmError(`cannot copy disk '${copy.disk}': ${copy.to} is in the way`);
}

/**
 * Clones stopped VM `source` as `options.name` (refused while it is live): its config (fixed
 * host ports made `auto`), and unless `linked`, copies of its disks as they are now, recorded as
 * files qvm made for the clone. Ctrl-C or SIGTERM during the copies removes them and adds no VM.
 */
export function cloneVm(env: VmEnv, source: VmRecord, options: CloneOptions): Promise<Cloned> {
  return withVm(env, source, { deadline: options.deadline }, async (seen) => {
    if (isLive(seen.status)) {
      throw new QvmError(`VM '${seen.vm.name}' is ${seen.status}: stop it before clone`);
    }
    refuseSharedOptionFiles(seen.vm);
    const id = crypto.randomUUID();
    const { config, copies, autoPorts } = plan(env, seen.vm, {
      id,
      name: options.name,
      linked: options.linked === true,
    });
    const diskDir = vmPaths(env.dirs, id).diskDir;
    const made: string[] = [];
    const vm = await withSignalsHeld(
      "no VM was added; the copies made so far are removed",
      async (signal) => {
        try {
          if (copies.length > 0) ensurePrivateDir(diskDir, { within: env.dirs.dataDir });
          for (const [i, copy] of copies.entries()) {
            signal.throwIfAborted();
            const progress = (percent: number) =>
              options.onProgress?.({
                disk: copy.disk,
                index: i + 1,
                count: copies.length,
                percent,
              });
            progress(0);
            await copyDisk(copy, { signal, onProgress: progress });
            made.push(copy.to);
          }
          signal.throwIfAborted();
          return env.store.insert({
            id,
            name: options.name,
            configPath: seen.vm.configPath,
            config,
            createdFiles: made,
          });
        } catch (err) {
          made.forEach(removeQuietly);
          removeQuietly(diskDir); // only if empty: never a recursive delete
          throw err;
        }
      },
    );
    return { vm, copied: copies.map(({ disk, from, to }) => ({ disk, from, to })), autoPorts };
  });
}
