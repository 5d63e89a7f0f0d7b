/**
 * What qvm knows about VM storage on disk: where each item lives, what `qemu-img` says about an
 * image (read with `-U`, so a running VM's disk can be inspected), whether it is intact, and which
 * files in qvm's disk folder no VM references. Reads only: nothing here writes or deletes.
 */
import { type ImgRun, runQemuImg } from "../qemu/img.ts";
import { join, resolve } from "../path.ts";
import { QvmError } from "../errors.ts";
import { diskFile } from "../config/mod.ts";
import type { DiskStorage, StorageItem } from "../config/mod.ts";
import type { Dirs, VmRecord } from "../state/mod.ts";
import { vmPaths } from "./paths.ts";

/** One storage item of one VM and the path it lives at (a disk image, or a virtfs folder). */
export interface StorageEntry {
  vm: VmRecord;
  item: StorageItem;
  path: string;
}

/** Every storage item of `vms`, in config order; paths are where QEMU would open them. */
export function storageEntries(vms: readonly VmRecord[], dirs: Dirs): StorageEntry[] {
  return vms.flatMap((vm) =>
    vm.config.storage.map((item) => ({
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
 * Verifies one disk: a missing file is `not_created` unless qvm created it (then `missing`);
 * raw disks only need to exist; qcow2 disks go through `qemu-img check -U`.
 */
export async function verifyDisk(
  vm: VmRecord,
  disk: DiskStorage,
  path: string,
): Promise<DiskVerdict> {
  const info = statOrUndefined(path);
  if (!info) {
    return vm.createdFiles.includes(path)
      ? { result: "missing", detail: "qvm created this disk and it is gone" }
      : { result: "not_created", detail: "the next start creates it empty" };
  }
  if (!info.isFile && !info.isBlockDevice) {
    return { result: "unreadable", detail: "neither a file nor a block device" };
  }
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

/**
 * Every file some VM references: its disks' paths, their backing files, and whatever qvm created
 * for it. Paths are resolved (symlinks too, where they exist).
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
