/**
 * What qvm knows about VM storage on disk: where each item lives, what `qemu-img` says about an
 * image (read with `-U`, so a running VM's disk can be inspected), whether it is intact, and which
 * files in qvm's disk folder no VM references. Reads only: nothing here writes or deletes.
 */
import { asidePath, type ImgRun, runQemuImg } from "../qemu/img.ts";
import { optionFiles } from "../qemu/reach.ts";
import { join, resolve } from "../path.ts";
import { QvmError } from "../errors.ts";
import { diskFile, sizeBytes } from "../config/mod.ts";
import type { DiskStorage, StorageItem } from "../config/mod.ts";
import type { Dirs, VmRecord } from "../state/mod.ts";
import { ROOT_DRIVE, vmPaths } from "../vm_files.ts";

/** The root disk of a VM made from an `image:`, as a storage item (a qcow2 over the image). */
export function rootDisk(vm: Pick<VmRecord, "id" | "config">, dirs: Dirs): DiskStorage | undefined {
  if (vm.config.image === undefined) return undefined;
  return {
    name: ROOT_DRIVE,
    type: "qcow2",
    file: vmPaths(dirs, vm.id).rootOverlay,
    interface: "virtio",
    backing_file: vm.config.image,
  };
}

/** The VM's storage with its root disk (of `image:`) first, when it has one. */
export function storageWithRoot(vm: Pick<VmRecord, "id" | "config">, dirs: Dirs): StorageItem[] {
  const root = rootDisk(vm, dirs);
  return root ? [root, ...vm.config.storage] : vm.config.storage;
}

/** One storage item of one VM and the path it lives at (a disk image, or a virtfs folder). */
export interface StorageEntry {
  vm: VmRecord;
  item: StorageItem;
  path: string;
}

/**
 * Every storage item of `vms`, in config order after the root disk of an `image:`; paths are where
 * QEMU would open them.
 */
export function storageEntries(vms: readonly VmRecord[], dirs: Dirs): StorageEntry[] {
  return vms.flatMap((vm) =>
    storageWithRoot(vm, dirs).map((item) => ({
      vm,
      item,
      path: item.type === "virtfs" ? item.path : diskFile(item, vmPaths(dirs, vm.id).diskDir),
    }))
  );
}

function imgMessage(run: ImgRun): string {
  const lines = run.stderr.trim().split("\n").filter((l) => l.trim() !== "");
  const last = lines.find((l) => l.startsWith("qemu-img: ")) ?? lines.at(-1);
  return last?.replace(/^qemu-img: /, "") || `qemu-img exited with status ${run.code}`;
}

/** Facts about one image, from `qemu-img info`. */
export interface ImageInfo {
  format: string;
  virtualSize: number;
  actualSize: number | null;
  backingFile: string | null;
}

/** Turns `qemu-img info --output=json` text into ImageInfo. */
export function parseImageInfo(json: string): ImageInfo {
  const info = JSON.parse(json);
  return {
    format: info.format,
    virtualSize: info["virtual-size"],
    actualSize: info["actual-size"] ?? null,
    backingFile: info["full-backing-filename"] ?? info["backing-filename"] ?? null,
  };
}

/**
 * `qemu-img info -U` of the image at `path`, opened as `format` (what QEMU will use): a
 * QvmError carrying qemu-img's message when it cannot be read.
 */
export async function imageInfo(path: string, format: string): Promise<ImageInfo> {
  const run = await runQemuImg(["info", "--output=json", "-U", "-f", format, "--", path]);
  if (run.code !== 0) throw new QvmError(imgMessage(run));
  return parseImageInfo(run.stdout);
}

/** How a disk fared in `storage verify`. */
export type DiskResult =
  | "ok"
  | "not_created"
  | "missing"
  | "wrong_size"
  | "unreadable"
  | "corrupt"
  | "leaks";

/** One disk's verdict; `detail` says what is wrong (null when ok). */
export interface DiskVerdict {
  result: DiskResult;
  detail: string | null;
}

/** Results that make `storage verify` fail; `not_created` is only informational. */
export const PROBLEMS: ReadonlySet<DiskResult> = new Set([
  "missing",
  "wrong_size",
  "unreadable",
  "corrupt",
  "leaks",
]);

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/**
 * Reads a `qemu-img check --output=json` run (exit 0 clean, 1 could not check, 2 corrupt,
 * 3 leaks only) into a verdict.
 */
export function checkVerdict(run: ImgRun): DiskVerdict {
  let report: Record<string, number> | undefined;
  try {
    report = run.stdout.trim() ? JSON.parse(run.stdout) : undefined;
  } catch { /* not JSON: qemu-img could not open the image */ }
  if (!report) return { result: "unreadable", detail: imgMessage(run) };
  const corruptions = report.corruptions ?? 0;
  const errors = report["check-errors"] ?? 0;
  const leaks = report.leaks ?? 0;
  if (corruptions > 0 || errors > 0) {
    const parts = [];
    if (corruptions > 0) parts.push(plural(corruptions, "corruption"));
    if (errors > 0) parts.push(plural(errors, "check error"));
    if (leaks > 0) parts.push(plural(leaks, "leaked cluster"));
    const first = run.stderr.split("\n").find((l) => /^ERROR/.test(l));
    return { result: "corrupt", detail: parts.join(", ") + (first ? ` (${first.trim()})` : "") };
  }
  if (leaks > 0) {
    return {
      result: "leaks",
      detail: `${plural(leaks, "leaked cluster")}: wasted space, reclaimed by ` +
        "'qemu-img check -r leaks' while the VM is stopped",
    };
  }
  if (run.code !== 0) return { result: "unreadable", detail: imgMessage(run) };
  return { result: "ok", detail: null };
}

function statOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/**
 * What is wrong with the size of the disk image `info` describes, if anything: an empty file (what
 * an interrupted create leaves), or a raw disk qvm made (`made`) that is now shorter than its
 * `size:` (a file of the user's is taken at its own size). Block devices and CD-ROMs are taken as
 * they are.
 */
export function sizeProblem(
  disk: DiskStorage,
  info: Deno.FileInfo,
  options: { made: boolean },
): string | undefined {
  if (!info.isFile || disk.media === "cdrom") return undefined;
  if (info.size === 0) return "it is empty (0 bytes), as an interrupted create leaves a disk";
  const short = disk.type === "raw" && disk.size !== undefined &&
    BigInt(info.size) < sizeBytes(disk.size);
  if (options.made && short) {
    return `it is ${info.size} bytes, less than its size: ${disk.size} (an interrupted create ` +
      "or copy?)";
  }
  return undefined;
}

/**
 * Verifies one disk: a missing file is `not_created` unless qvm created it (then `missing`; one an
 * interrupted start left unfinished is `not_created`); an empty file, or a raw one qvm made that
 * is shorter than its size, is `wrong_size`;
 * raw disks need nothing more; qcow2 disks go through `qemu-img check -U`.
 */
export async function verifyDisk(
  vm: VmRecord,
  disk: DiskStorage,
  path: string,
): Promise<DiskVerdict> {
  const info = statOrUndefined(path);
  if (!info) {
    if (vm.createdFiles.includes(asidePath(path))) {
      return {
        result: "not_created",
        detail: "an interrupted start left it unfinished; the next start creates it",
      };
    }
    return vm.createdFiles.includes(path)
      ? { result: "missing", detail: "qvm created this disk and it is gone" }
      : { result: "not_created", detail: "the next start creates it empty" };
  }
  if (!info.isFile && !info.isBlockDevice) {
    return { result: "unreadable", detail: "neither a file nor a block device" };
  }
  const problem = sizeProblem(disk, info, { made: vm.createdFiles.includes(path) });
  if (problem !== undefined) return { result: "wrong_size", detail: problem };
  if (disk.type === "raw") return { result: "ok", detail: null };
  return checkVerdict(
    await runQemuImg(["check", "--output=json", "-U", "-f", disk.type, "--", path]),
  );
}

/** Maps `items` through `fn` with at most `limit` calls in flight; results keep input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The folder holding qvm's default disk locations (one subfolder per VM id). */
export function disksRoot(dirs: Dirs): string {
  return join(dirs.dataDir, "disks");
}

function canonical(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return resolve(path);
  }
}

/** A file a VM's config reaches: a disk, a backing file, or a file its QEMU options name. */
export interface ReachedFile {
  path: string;
  /** The format QEMU opens it as, when the config pins one. */
  format?: string;
  /** QEMU opens it as a disk image (so it may have a backing chain). */
  disk: boolean;
  /** QEMU writes it. */
  writable: boolean;
  /** How the config reaches it, for messages: `disk 'hdd'`, `-drive`, ... */
  via: string;
}

/**
 * Every file `vm`'s config reaches (not what lies below in backing chains): its disks (the root
 * overlay of `image:` included) and their backing files, and the files its `arguments` and
 * `args` name. Paths as the config has them (absolute).
 */
export function reachedFiles(vm: VmRecord, dirs: Dirs): ReachedFile[] {
  const diskDir = vmPaths(dirs, vm.id).diskDir;
  const files: ReachedFile[] = [];
  for (const disk of storageWithRoot(vm, dirs)) {
    if (disk.type === "virtfs") continue;
    const readOnly = disk.media === "cdrom" ||
      /^(on|true|yes)$/i.test(disk.options?.readonly ?? "");
    const via = disk.name === ROOT_DRIVE ? "its root disk" : `disk '${disk.name}'`;
    files.push({
      path: diskFile(disk, diskDir),
      format: disk.type,
      disk: true,
      writable: !readOnly,
      via,
    });
    if (disk.backing_file) {
      files.push({
        path: disk.backing_file,
        ...(disk.backing_format ? { format: disk.backing_format } : {}),
        disk: true,
        writable: false,
        via: disk.name === ROOT_DRIVE ? "image:" : `the backing file of ${via}`,
      });
    }
  }
  for (const file of optionFiles(vm.config)) {
    files.push({
      path: file.path,
      ...(file.format ? { format: file.format } : {}),
      disk: file.disk,
      writable: file.writable,
      via: `-${file.option}`,
    });
  }
  return files;
}

/**
 * Every file some VM references: its disks' paths (the root overlay of `image:` too), their
 * backing files, and whatever qvm created for it (or is creating). Paths are resolved (symlinks
 * too, where they exist).
 */
export function referencedFiles(vms: readonly VmRecord[], dirs: Dirs): Set<string> {
  const refs = new Set<string>();
  for (const entry of storageEntries(vms, dirs)) {
    if (entry.item.type === "virtfs") continue;
    refs.add(canonical(entry.path));
    if (entry.item.backing_file) refs.add(canonical(entry.item.backing_file));
  }
  for (const vm of vms) for (const file of vm.createdFiles) refs.add(canonical(file));
  return refs;
}

/** A file in the disk folder that no VM references. */
export interface OrphanFile {
  path: string;
  /** Apparent size in bytes. */
  size: number;
  /** Bytes actually allocated on disk (images are often sparse). */
  allocated: number;
}

function walkFiles(dir: string, found: string[]): void {
  let entries;
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) walkFiles(path, found);
    else if (entry.isFile) found.push(path);
  }
}

/** Regular files under `<dataDir>/disks` (recursively, symlinks not followed) not in `refs`. */
export function orphanedFiles(dirs: Dirs, refs: ReadonlySet<string>): OrphanFile[] {
  const files: string[] = [];
  walkFiles(disksRoot(dirs), files);
  return files.filter((path) => !refs.has(canonical(path))).map((path) => {
    const info = Deno.statSync(path);
    return { path, size: info.size, allocated: (info.blocks ?? 0) * 512 };
  });
}
