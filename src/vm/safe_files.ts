/**
 * Files qvm writes in its own folders, or has QEMU write there by path (its log, the serial log,
 * the pid file), are never opened through a symlink: whatever else sits at such a path (a symlink,
 * a hard link, a fifo) is unlinked, never followed, and qvm's own files are made with an exclusive
 * create, so the target of a planted link is never truncated or appended to.
 */
import { QvmError } from "../errors.ts";
import type { VmPaths } from "../vm_files.ts";

function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/** True for a regular file with no other name (safe to open by its path). */
function isPlainFile(info: Deno.FileInfo): boolean {
  return info.isFile && (info.nlink ?? 1) <= 1;
}

/** Unlinks what is at `path` (a link itself, never its target); a folder is refused. */
function unlink(path: string, info: Deno.FileInfo): void {
  if (info.isDirectory) {
    throw new QvmError(`${path} is a folder where qvm keeps a file: move it away`);
  }
  try {
    Deno.removeSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

function createNew(path: string): void {
  Deno.openSync(path, { write: true, createNew: true, mode: 0o600 }).close();
}

/** Replaces whatever is at `path` with a new empty file of ours (mode 0600, exclusive create). */
export function createFreshFile(path: string): void {
  const info = lstatOrUndefined(path);
  if (info) unlink(path, info);
  createNew(path);
}

/**
 * Makes `path` a plain file of ours, keeping the content of one that already is; anything else
 * there (symlink, hard link, fifo) is unlinked first and an empty file made in its place.
 */
export function ensurePlainFile(path: string): void {
  const info = lstatOrUndefined(path);
  if (info && isPlainFile(info)) return;
  if (info) unlink(path, info);
  createNew(path);
}

/** Unlinks whatever is at `path` (never following a link); true if something was there. */
export function clearPath(path: string): boolean {
  const info = lstatOrUndefined(path);
  if (!info) return false;
  unlink(path, info);
  return true;
}

/**
 * Readies the files QEMU opens by path before it is launched: a fresh QEMU log, the serial log
 * (kept, QEMU appends to it) as a plain file, and no pid file. Run it after the folders are made.
 */
export function prepareQemuFiles(paths: VmPaths): void {
  createFreshFile(paths.qemuLog);
  ensurePlainFile(paths.serialLog);
  clearPath(paths.pidFile);
}
