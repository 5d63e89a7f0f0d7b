/**
 * The image cache: verified downloads in `<data dir>/images`, each named by its SHA-256
 * (`sha256-<hex>.qcow2`) beside a JSON record of where it came from and how it was verified.
 * It lives in the data dir, not in `~/.cache`, because VMs' root disks are overlays that read
 * these files for as long as the VMs exist: a cache cleaner must not take them away.
 *
 * A download becomes a cache entry only after its digest matches the expected one and
 * `qemu-img` finds a standalone qcow2 (no backing file, no external data file, `check` clean) or
 * a raw disk with a partition table; otherwise it is deleted. Downloads in progress sit in
 * `images/partial/` until then, so an interrupted one resumes.
 */
import { QvmError, UsageError } from "../errors.ts";
import type { ImageFormat } from "../config/mod.ts";
import { runQemuImg } from "../qemu/img.ts";
import { ensurePrivateDir, type StateStore, type VmRecord } from "../state/mod.ts";
import { sha256Hex } from "../sha256.ts";
import type { Checksum, DigestAlgorithm } from "./checksums.ts";
import { type PartFile, removePart } from "./download.ts";

/** One cached image, as its record says. */
export interface CachedImage {
  /** The first 12 hex digits of `sha256`: what `image ls` shows and `image rm` takes. */
  id: string;
  sha256: string;
  /** Present when the image was verified against a SHA-512. */
  sha512?: string;
  format: ImageFormat;
  /** Bytes on the host. */
  size: number;
  /** The disk size the guest sees. */
  virtual_size: number;
  /** The file name in its URL. */
  name: string;
  /** The catalog name it was pulled by, if any. */
  alias?: string;
  urls: string[];
  /** How it was verified, e.g. `sha512 listed in https://…/SHA512SUMS`. */
  verified: string;
  fetched_at: string;
  /** The image file. */
  path: string;
}

/** A download not yet complete. */
export interface PartialDownload {
  url: string;
  bytes: number;
  total?: number;
  part: PartFile;
}

/** The cache folder under `dataDir`. */
export function imagesDir(dataDir: string): string {
  return `${dataDir.replace(/\/+$/, "")}/images`;
}

function partialDir(dataDir: string): string {
  return `${imagesDir(dataDir)}/partial`;
}

/** The `.part` file of `url`'s download (one per URL, so a new attempt resumes the last). */
export function partFor(dataDir: string, url: string): PartFile {
  const base = `${partialDir(dataDir)}/${sha256Hex(url).slice(0, 32)}`;
  return { file: `${base}.part`, meta: `${base}.json` };
}

/** Makes the cache folders (mode 0700, inside the data dir) and returns the `.part` of `url`. */
export function preparePart(dataDir: string, url: string): PartFile {
  ensurePrivateDir(imagesDir(dataDir), { within: dataDir });
  ensurePrivateDir(partialDir(dataDir), { within: dataDir });
  return partFor(dataDir, url);
}

function recordPath(dataDir: string, sha256: string): string {
  return `${imagesDir(dataDir)}/sha256-${sha256}.json`;
}

function imagePath(dataDir: string, sha256: string, format: ImageFormat): string {
  return `${imagesDir(dataDir)}/sha256-${sha256}.${format}`;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Every cached image (a record whose image file is there), oldest first. */
export function listCached(dataDir: string): CachedImage[] {
  const out: CachedImage[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(imagesDir(dataDir))];
  } catch {
    return out;
  }
  for (const entry of entries) {
    const match = /^sha256-([0-9a-f]{64})\.json$/.exec(entry.name);
    if (!match || !entry.isFile) continue;
    try {
      const record = JSON.parse(Deno.readTextFileSync(`${imagesDir(dataDir)}/${entry.name}`));
      const path = imagePath(dataDir, match[1], record.format);
      if (record.sha256 !== match[1] || !exists(path)) continue;
      out.push({ ...record, id: match[1].slice(0, 12), path });
    } catch { /* unreadable record: not an entry */ }
  }
  return out.sort((a, b) => a.fetched_at.localeCompare(b.fetched_at));
}

/** The cached image with digest `sum`, if any. */
export function cachedByChecksum(dataDir: string, sum: Checksum): CachedImage | undefined {
  return listCached(dataDir).find((image) => image[sum.algorithm] === sum.hex);
}

/** The most recent cached image downloaded from `url`, if any. */
export function cachedByUrl(dataDir: string, url: string): CachedImage | undefined {
  return listCached(dataDir).filter((image) => image.urls.includes(url)).pop();
}

/** Downloads in progress or interrupted. */
export function listPartials(dataDir: string): PartialDownload[] {
  const out: PartialDownload[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(partialDir(dataDir))];
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!entry.name.endsWith(".json")) continue;
    try {
      const meta = JSON.parse(Deno.readTextFileSync(`${partialDir(dataDir)}/${entry.name}`));
      const part = partFor(dataDir, meta.url);
      if (part.meta !== `${partialDir(dataDir)}/${entry.name}`) continue;
      let bytes = 0;
      try {
        bytes = Deno.statSync(part.file).size;
      } catch { /* record only */ }
      out.push({ url: meta.url, bytes, ...(meta.total ? { total: meta.total } : {}), part });
    } catch { /* not a record */ }
  }
  return out;
}

/** The digest of `file` by coreutils (`sha256sum`, `sha512sum`): ~4x faster than hashing in JS. */
async function digestFile(file: string, algorithm: DigestAlgorithm): Promise<string> {
  const tool = `${algorithm}sum`;
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(tool, {
      args: ["--", file],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new QvmError(`${tool} not found: install coreutils`);
    }
    throw error;
  }
  const hex = /^\\?([0-9a-f]+)\s/.exec(new TextDecoder().decode(output.stdout))?.[1];
  if (!output.success || !hex) {
    const reason = new TextDecoder().decode(output.stderr).trim().split("\n")[0];
    throw new QvmError(`${tool} failed on ${file}: ${reason || `exit ${output.code}`}`);
  }
  return hex;
}

/** What `inspectImage` found. */
export interface ImageFacts {
  format: ImageFormat;
  virtualSize: number;
}

/** True when `file` starts like a partitioned disk: an MBR boot signature or a GPT header. */
function hasPartitionTable(file: string): boolean {
  const head = new Uint8Array(520);
  let read = 0;
  try {
    const handle = Deno.openSync(file, { read: true });
    try {
      while (read < head.length) {
        const n = handle.readSync(head.subarray(read));
        if (n === null || n === 0) break;
        read += n;
      }
    } finally {
      handle.close();
    }
  } catch {
    return false;
  }
  const mbr = read >= 512 && head[510] === 0x55 && head[511] === 0xaa;
  const gpt = read >= 520 && new TextDecoder().decode(head.subarray(512, 520)) === "EFI PART";
  return mbr || gpt;
}

/**
 * Reads `file`'s format with `qemu-img info` on that file alone (its backing chain is never
 * opened) and refuses (UsageError) what qvm does not boot from: a format other than qcow2 or raw,
 * another format than `expected`, a qcow2 that names a backing file or an external data file.
 * A download (`downloaded`) must also pass `qemu-img check` (qcow2) or hold a partition table
 * (raw): an HTML error page or a cut-off file is not a disk.
 */
export async function inspectImage(
  file: string,
  options: { downloaded: boolean; expected?: ImageFormat; shown?: string },
): Promise<ImageFacts> {
  const shown = options.shown ?? file;
  const info = await runQemuImg(["info", "-U", "--output=json", "--", file]);
  if (info.code !== 0) {
    const reason = info.stderr.trim().split("\n").pop()?.replace(/^qemu-img: /, "");
    throw new UsageError(`${shown} is not a disk image qemu-img can read: ${reason}`);
  }
  const facts = JSON.parse(info.stdout) as {
    format?: string;
    "virtual-size"?: number;
    "backing-filename"?: string;
    "format-specific"?: { data?: { "data-file"?: string } };
  };
  const format = facts.format;
  if (format !== "qcow2" && format !== "raw") {
    throw new UsageError(
      `${shown} is a ${format ?? "unknown"} image: qvm boots qcow2 or raw images`,
    );
  }
  if (options.expected && format !== options.expected) {
    throw new UsageError(`${shown} is a ${format} image, not ${options.expected} as expected`);
  }
  if (facts["backing-filename"]) {
    throw new UsageError(
      `${shown} names a backing file (${facts["backing-filename"]}): a base image must stand ` +
        "alone (qemu-img convert makes one that does)",
    );
  }
  if (facts["format-specific"]?.data?.["data-file"]) {
    throw new UsageError(`${shown} keeps its data in an external file: qvm refuses such images`);
  }
  if (options.downloaded && format === "qcow2") {
    const check = await runQemuImg(["check", "-q", "-f", "qcow2", "--", file]);
    // 0: clean; 3: only leaked clusters, which waste space but harm no data.
    if (check.code !== 0 && check.code !== 3) {
      const reason = check.stderr.trim().split("\n").pop()?.replace(/^qemu-img: /, "") ||
        "it is damaged or cut short";
      throw new UsageError(`${shown} is not a sound qcow2 image: ${reason}`);
    }
  }
  if (options.downloaded && format === "raw") {
    const size = facts["virtual-size"] ?? 0;
    if (size % 512 !== 0 || !hasPartitionTable(file)) {
      throw new UsageError(`${shown} is not a disk image (no qcow2 header, no partition table)`);
    }
  }
  return { format, virtualSize: facts["virtual-size"] ?? 0 };
}

/** Where the bytes of `part` came from and what they must be, for `admit`. */
export interface Admission {
  url: string;
  name: string;
  alias?: string;
  /** The digest they must have; absent only with --insecure-no-checksum. */
  expected?: Checksum;
  /** How `expected` was learnt, e.g. `sha512 listed in https://…/SHA512SUMS`. */
  verified: string;
  format?: ImageFormat;
}

/** A download that passed verification, ready to enter the cache. */
export interface Verified {
  part: PartFile;
  record: Omit<CachedImage, "id" | "path">;
}

/**
 * Verifies a finished download: its digest, then `inspectImage`. A mismatch or a file that is
 * not a sound image deletes the download and throws a UsageError (exit 3), so nothing can enter
 * the cache. Takes no lock: hashing a large image takes seconds.
 */
export async function verifyDownload(
  part: PartFile,
  what: Admission,
  onVerify?: (algorithm: DigestAlgorithm) => void,
): Promise<Verified> {
  try {
    const algorithms: DigestAlgorithm[] = what.expected?.algorithm === "sha512"
      ? ["sha256", "sha512"]
      : ["sha256"];
    onVerify?.(what.expected?.algorithm ?? "sha256");
    const [sha256, sha512] = await Promise.all(algorithms.map((a) => digestFile(part.file, a)));
    const got = what.expected?.algorithm === "sha512" ? sha512 : sha256;
    if (what.expected && got !== what.expected.hex) {
      throw new UsageError(
        `${what.url}: checksum mismatch (expected ${what.expected.algorithm} ` +
          `${what.expected.hex.slice(0, 16)}…, got ${got.slice(0, 16)}…): the download was ` +
          "deleted and nothing was cached",
      );
    }
    const facts = await inspectImage(part.file, {
      downloaded: true,
      expected: what.format,
      shown: what.url,
    }).catch((error) => {
      if (error instanceof UsageError) {
        throw new UsageError(`${error.message}; the download was deleted, nothing was cached`);
      }
      throw error;
    });
    return {
      part,
      record: {
        sha256,
        ...(sha512 ? { sha512 } : {}),
        format: facts.format,
        size: Deno.statSync(part.file).size,
        virtual_size: facts.virtualSize,
        name: what.name,
        ...(what.alias ? { alias: what.alias } : {}),
        urls: [what.url],
        verified: what.verified,
        fetched_at: new Date().toISOString(),
      },
    };
  } catch (error) {
    // A download that failed verification goes; one qvm could not check (a tool missing) stays.
    if (error instanceof UsageError) removePart(part);
    throw error;
  }
}

/**
 * Makes a verified download a cache entry (or adds its URL to the entry that holds the same
 * bytes). The caller holds the cache lock.
 */
export function admit(dataDir: string, verified: Verified): CachedImage {
  const { part, record } = verified;
  const existing = listCached(dataDir).find((i) => i.sha256 === record.sha256);
  if (existing) {
    removePart(part);
    return addUrl(dataDir, existing, record.urls[0]);
  }
  const path = imagePath(dataDir, record.sha256, record.format);
  // The record first, the image last: an entry exists once its image file does.
  writeRecord(recordPath(dataDir, record.sha256), record);
  Deno.chmodSync(part.file, 0o400);
  Deno.renameSync(part.file, path);
  removePart(part);
  return { ...record, id: record.sha256.slice(0, 12), path };
}

function writeRecord(path: string, record: Record<string, unknown>): void {
  const aside = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  Deno.writeTextFileSync(aside, JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
  Deno.renameSync(aside, path);
}

/** Records that `image` was also fetched from `url` (the same bytes from another address). */
export function addUrl(dataDir: string, image: CachedImage, url: string): CachedImage {
  if (image.urls.includes(url)) return image;
  const { id: _id, path: _path, ...record } = image;
  const updated = { ...record, urls: [...image.urls, url] };
  writeRecord(recordPath(dataDir, image.sha256), updated);
  return { ...image, urls: updated.urls };
}

/** Removes a cached image (record first, so a half-removed entry is simply gone). */
export function removeCached(dataDir: string, image: CachedImage): void {
  try {
    Deno.removeSync(recordPath(dataDir, image.sha256));
  } catch { /* gone already */ }
  try {
    Deno.removeSync(image.path);
  } catch { /* gone already */ }
}

function real(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

/** The VMs whose root disk is an overlay of `image` (their `image:` is its file). */
export function imageUsers(store: StateStore, image: { path: string }): VmRecord[] {
  const target = real(image.path);
  return store.list().filter((vm) => vm.config.image && real(vm.config.image) === target);
}
