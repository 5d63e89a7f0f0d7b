/**
 * qemu-img: creating missing disks (never overwriting) and reading image facts; and the folder of a
 * shared folder (virtfs), made at start when missing.
 */
import { QvmError, UsageError } from "../errors.ts";
import { type DiskStorage, systemFolderOf, type VirtfsStorage } from "../config/mod.ts";

/** What `qemu-img` printed and how it exited. */
export interface ImgRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs qemu-img and returns its output whatever the exit code (`check` exits 2 or 3 with a
 * report); only a missing qemu-img is an error.
 */
export async function runQemuImg(args: string[]): Promise<ImgRun> {
  let output;
  try {
    output = await new Deno.Command("qemu-img", { args, stdout: "piped", stderr: "piped" })
      .output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new QvmError("qemu-img not found: install qemu-utils");
    }
    throw err;
  }
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Runs qemu-img with `args`; a non-zero exit is a QvmError carrying qemu-img's own message. */
export async function qemuImg(args: string[]): Promise<string> {
  const run = await runQemuImg(args);
  if (run.code !== 0) {
    const stderr = run.stderr.trim();
    throw new QvmError(stderr.split("\n").pop()?.replace(/^qemu-img: /, "") || "qemu-img failed", {
      detail: stderr,
    });
  }
  return run.stdout;
}

/** The `qemu-img create` argv for a disk at `file` (no size: an overlay as big as its backing file). */
export function createArgs(disk: DiskStorage, file: string): string[] {
  const args = ["create", "-q", "-f", disk.type];
  if (disk.backing_file) {
    args.push("-b", disk.backing_file, "-F", disk.backing_format ?? "qcow2");
  }
  args.push("--", file);
  if (disk.size !== undefined) args.push(disk.size);
  return args;
}

/**
 * Creates the disk at `file` unless something is already there; true if it created it. The file
 * is first claimed with an exclusive create, so an existing file is never overwritten; nothing is
 * ever created in a system folder (`/etc`, `/usr`, ..., also through a symlink), nor for a CD-ROM.
 */
export async function createDiskIfMissing(disk: DiskStorage, file: string): Promise<boolean> {
  if (disk.media === "cdrom") return false;
  const folder = systemFolderOf(file);
  if (folder !== undefined) {
    try {
      Deno.statSync(file);
      return false;
    } catch {
      throw new UsageError(
        `refusing to create disk '${disk.name}' at '${file}': ${folder} is a system folder ` +
          "(an image that already exists there may be used; new disks go elsewhere)",
      );
    }
  }
  try {
    Deno.openSync(file, { write: true, createNew: true, mode: 0o600 }).close();
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return false;
    const reason = (err as Error).message.replace(/, open '.*'$/, "").replace(
      / \(os error \d+\)/,
      "",
    );
    throw new QvmError(`cannot create disk '${disk.name}' at ${file}: ${reason}`);
  }
  try {
    await qemuImg(createArgs(disk, file));
  } catch (err) {
    Deno.removeSync(file);
    if (err instanceof QvmError) {
      throw new QvmError(`cannot create disk '${disk.name}' at ${file}: ${err.message}`, {
        detail: err.detail,
      });
    }
    throw err;
  }
  return true;
}

/**
 * Makes a shared folder's `path` (with its parents) when it does not exist, as maqet does at start;
 * true if it made it. Never inside a system folder (`/etc`, `/usr`, ..., also through a symlink).
 */
export function createShareIfMissing(share: VirtfsStorage): boolean {
  try {
    Deno.statSync(share.path);
    return false;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) return false;
  }
  const folder = systemFolderOf(share.path);
  if (folder !== undefined) {
    throw new UsageError(
      `refusing to create shared folder '${share.name}' at '${share.path}': ${folder} is a ` +
        "system folder",
    );
  }
  try {
    Deno.mkdirSync(share.path, { recursive: true });
  } catch (err) {
    const reason = (err as Error).message.replace(/: mkdir '.*'$/, "");
    throw new QvmError(`cannot create shared folder '${share.name}' at ${share.path}: ${reason}`);
  }
  return true;
}
