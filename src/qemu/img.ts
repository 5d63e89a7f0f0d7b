/**
 * qemu-img: creating missing disks (made aside, never overwriting), reading backing chains, and the
 * folder of a shared folder (virtfs), made at start when missing.
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

/** One image of a backing chain, as its header reads (`qemu-img info -f FORMAT`). */
export interface ChainLayer {
  /** The file, as it was opened. */
  file: string;
  /** The format it was opened as (pinned, never probed). */
  format: string;
  /** The backing file its header names, as QEMU would open it (resolved against its folder). */
  backing?: string;
  /** The backing file's format its header pins; QEMU guesses it when absent. */
  backingFormat?: string;
  /** A qcow2 image's external data file, if it has one. */
  dataFile?: string;
  /** The size of the disk it holds, in bytes. */
  virtualSize?: number;
}

/** The deepest backing chain qvm reads. */
const MAX_CHAIN = 16;

function layerOf(file: string, format: string, info: Record<string, unknown>): ChainLayer {
  const backing = info["full-backing-filename"] ?? info["backing-filename"];
  const backingFormat = info["backing-filename-format"];
  const specific = info["format-specific"] as { data?: Record<string, unknown> } | undefined;
  const dataFile = specific?.data?.["data-file"];
  return {
    file,
    format,
    ...(typeof backing === "string" ? { backing } : {}),
    ...(typeof backingFormat === "string" ? { backingFormat } : {}),
    ...(typeof dataFile === "string" ? { dataFile } : {}),
    ...(typeof info["virtual-size"] === "number" ? { virtualSize: info["virtual-size"] } : {}),
  };
}

/**
 * The backing chain of the image at `file` opened as `format` (pinned, never probed), top first
 * (a running VM's image too: `-U`). One header is read at a time (`qemu-img info -f FORMAT`,
 * which opens no backing file), and the walk goes on to a backing file only when `follow(path)`
 * allows it, opened as the format its header pins (raw when none): a file a chain may not name
 * is never opened, unlike with `qemu-img info --backing-chain`, which opens every file first and
 * waits forever on a FIFO. The last layer is one without a backing file, one whose backing file
 * `follow` refused, or one whose backing file cannot be opened (gone); each names its backing
 * file. Throws a UsageError naming `file` when the top itself cannot be read as `format`.
 */
export async function backingChain(
  file: string,
  format: string,
  follow: (path: string) => boolean = () => true,
): Promise<ChainLayer[]> {
  const chain: ChainLayer[] = [];
  let next: { file: string; format: string } | undefined = { file, format };
  while (next !== undefined) {
    const current: { file: string; format: string } = next;
    if (chain.length === MAX_CHAIN || chain.some((layer) => layer.file === current.file)) {
      throw new UsageError(
        `image '${file}': its backing chain ${
          chain.length === MAX_CHAIN ? `is deeper than ${MAX_CHAIN} files` : "loops"
        } (at '${current.file}')`,
      );
    }
    const run = await runQemuImg([
      "info",
      "-U",
      "--output=json",
      "-f",
      current.format,
      "--",
      current.file,
    ]);
    if (run.code !== 0) {
      if (chain.length > 0) break; // a backing file that is gone: the layer above names it
      const reason = run.stderr.trim().split("\n").pop()?.replace(/^qemu-img: /, "");
      throw new UsageError(
        `cannot read image '${file}' as ${format}: ${reason || "qemu-img failed"}`,
      );
    }
    const layer = layerOf(current.file, current.format, JSON.parse(run.stdout));
    chain.push(layer);
    next = layer.backing !== undefined && follow(layer.backing)
      ? { file: layer.backing, format: layer.backingFormat ?? "raw" }
      : undefined;
  }
  return chain;
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
 * Where an image qvm makes is written before it is complete: a hidden name beside `file`, so it is
 * linked into place whole or not at all (a killed `qemu-img` leaves no short file under `file`).
 */
export function asidePath(file: string): string {
  const slash = file.lastIndexOf("/");
  return `${file.slice(0, slash + 1)}.${file.slice(slash + 1)}.qvm-part`;
}

function reasonOf(err: unknown): string {
  return (err as Error).message.replace(/, (open|link) '.*'$/, "").replace(/ \(os error \d+\)/, "");
}

/**
 * Makes an image at `file` by `make(target)` (e.g. a `qemu-img create` of target): written at
 * `asidePath(file)` (claimed with an exclusive create; a leftover there is replaced only when
 * `replaceAside`), then linked into place, never over a file that is there: false when `file`
 * exists (nothing made). A failure removes what it wrote and throws a QvmError.
 */
export async function createAside(
  file: string,
  options: { make: (target: string) => Promise<unknown>; what: string; replaceAside?: boolean },
): Promise<boolean> {
  const aside = asidePath(file);
  const fail = (reason: string, detail?: string) =>
    new QvmError(`cannot create ${options.what} at ${file}: ${reason}`, { detail });
  if (options.replaceAside) {
    try {
      if (Deno.lstatSync(aside).isFile) Deno.removeSync(aside);
    } catch { /* none */ }
  }
  try {
    Deno.lstatSync(file);
    return false;
  } catch { /* not there: make it */ }
  try {
    Deno.openSync(aside, { write: true, createNew: true, mode: 0o600 }).close();
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) throw fail(reasonOf(err));
    throw fail(`${aside} is in the way (left by an interrupted create?): remove it`);
  }
  try {
    await options.make(aside);
    Deno.chmodSync(aside, 0o600);
    try {
      Deno.linkSync(aside, file); // fails rather than replace a file that appeared meanwhile
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) return false;
      // A file system without hard links: rename, after one more look.
      try {
        Deno.lstatSync(file);
        return false;
      } catch { /* still not there */ }
      Deno.renameSync(aside, file);
    }
    return true;
  } catch (err) {
    if (err instanceof QvmError) throw fail(err.message, err.detail);
    throw fail(reasonOf(err));
  } finally {
    try {
      Deno.removeSync(aside);
    } catch { /* renamed into place */ }
  }
}

/**
 * Creates the disk at `file` unless something is already there; true if it created it. It is made
 * aside and linked into place (`createAside`), so an existing file is never overwritten and an
 * interrupted create never leaves a short one; nothing is ever created in a system folder (`/etc`,
 * `/usr`, ..., also through a symlink), nor for a CD-ROM. `replaceAside`: a leftover of an
 * interrupted create of this disk (recorded by the caller) may be replaced.
 */
export async function createDiskIfMissing(
  disk: DiskStorage,
  file: string,
  options: { replaceAside?: boolean } = {},
): Promise<boolean> {
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
  return await createAside(file, {
    make: (target) => qemuImg(createArgs(disk, target)),
    what: `disk '${disk.name}'`,
    replaceAside: options.replaceAside,
  });
}

const QCOW2_MAGIC = 0x514649fb;

/**
 * Reads a qcow2 header without qemu-img: undefined when `file` is not a regular file starting with
 * qcow2's magic, else whether the header names a backing file. Never opens anything but a regular
 * file (a fifo could block).
 */
export function qcow2Header(file: string): { backing: boolean } | undefined {
  let image: Deno.FsFile | undefined;
  try {
    if (!Deno.statSync(file).isFile) return undefined;
    image = Deno.openSync(file, { read: true });
    const head = new Uint8Array(20);
    if ((image.readSync(head) ?? 0) < 20) return undefined;
    const view = new DataView(head.buffer);
    if (view.getUint32(0) !== QCOW2_MAGIC) return undefined;
    return { backing: view.getBigUint64(8) !== 0n && view.getUint32(16) !== 0 };
  } catch {
    return undefined;
  } finally {
    image?.close();
  }
}

/**
 * Makes a shared folder's `path` (with its parents) when it does not exist, as maqet does at start;
 * true if it made it. Never inside a system folder (`/etc`, `/usr`, ..., also through a symlink).
 * A file at `path` is refused (exit 3) before QEMU is launched.
 */
export function createShareIfMissing(share: VirtfsStorage): boolean {
  try {
    if (Deno.statSync(share.path).isDirectory) return false;
    throw new UsageError(
      `shared folder '${share.name}' at ${share.path} is a file, and a virtfs share is a folder`,
    );
  } catch (err) {
    if (err instanceof UsageError) throw err;
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

/**
 * Copies the image at `from` (opened as `format`, pinned) to `to` with `qemu-img convert`: sparse
 * (zeroes are not written), and an image over a backing file stays one, over the same `backing`
 * (opened as `backingFormat`), with only its own clusters copied. `onProgress` hears the percent
 * done; `signal` kills the copy. Throws a QvmError with qemu-img's message when it fails.
 */
export async function convertImage(
  from: string,
  to: string,
  options: {
    format: string;
    backing?: string;
    backingFormat?: string;
    onProgress?: (percent: number) => void;
    signal?: AbortSignal;
  },
): Promise<void> {
  const args = ["convert", "-p", "-f", options.format, "-O", options.format];
  if (options.backing !== undefined) {
    args.push("-B", options.backing);
    if (options.backingFormat !== undefined) args.push("-F", options.backingFormat);
  }
  args.push("--", from, to);
  let child;
  try {
    child = new Deno.Command("qemu-img", {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: options.signal,
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new QvmError("qemu-img not found: install qemu-utils");
    }
    throw err;
  }
  const decoder = new TextDecoder();
  const stderr = new Response(child.stderr).text();
  let text = "";
  for await (const chunk of child.stdout) {
    text = (text + decoder.decode(chunk, { stream: true })).slice(-200);
    const done = [...text.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)].at(-1);
    if (done) options.onProgress?.(Number(done[1]));
  }
  const status = await child.status;
  const message = (await stderr).trim();
  if (!status.success) {
    throw new QvmError(
      message.split("\n").pop()?.replace(/^qemu-img: /, "") ||
        `qemu-img convert ended with ${status.signal ?? `status ${status.code}`}`,
      { detail: message || undefined },
    );
  }
}
