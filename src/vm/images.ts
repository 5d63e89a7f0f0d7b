/**
 * The image cache as commands use it: `pull` a URL or catalog name (verified before it is
 * cached, downloaded once, resumed when interrupted), list, and remove (refused while a VM's root
 * disk stands on the image). One lock per URL keeps two pulls of it from writing one `.part`; the
 * cache lock orders additions, removals and the VM definitions that refer to cached images.
 */
import { UsageError } from "../errors.ts";
import { type CatalogEntry, catalogEntry, isHttpUrl, loadCatalog } from "../cloud/catalog.ts";
import {
  type Checksum,
  checksumFor,
  type DigestAlgorithm,
  parseChecksums,
  parseSha256,
} from "../cloud/checksums.ts";
import { type DownloadProgress, downloadToPart, fetchText, removePart } from "../cloud/download.ts";
import {
  addUrl,
  admit,
  cachedByChecksum,
  cachedByUrl,
  type CachedImage,
  imageUsers,
  listCached,
  listPartials,
  type PartialDownload,
  preparePart,
  removeCached,
  verifyDownload,
} from "../cloud/image_cache.ts";
import { sha256Hex } from "../sha256.ts";
import { type Deadline, MAX_WAIT_S, type VmEnv } from "./env.ts";
import { acquireLock, type VmLock } from "./lock.ts";

/** What to pull: a URL or a catalog name, and how to verify it. */
export interface PullRequest {
  source: string;
  /** `--sha256 HEX`. */
  sha256?: string;
  /** `--insecure-no-checksum`: use the image unverified when no checksum is known. */
  insecure?: boolean;
}

/** What a pull is doing, for a progress line. */
export type PullProgress =
  | { step: "checksums"; url: string }
  | ({ step: "download"; name: string } & DownloadProgress)
  | { step: "verify"; name: string; algorithm: DigestAlgorithm };

/** The result of a pull. */
export interface Pulled {
  image: CachedImage;
  /** False when the cache already held it. */
  fetched: boolean;
}

/** The lock that orders changes of the cache and definitions of VMs on cached images. */
export function cacheLock(env: VmEnv, deadline?: Deadline): Promise<VmLock> {
  return acquireLock(`${env.dirs.runtimeDir}/locks/images.lock`, {
    timeoutMs: deadline?.remainingMs() ?? 30_000,
    what: "the image cache",
  });
}

/** The file name at the end of `url`'s path (what checksum files list). */
export function fileNameOf(url: string): string {
  const path = new URL(url).pathname;
  try {
    return decodeURIComponent(path.slice(path.lastIndexOf("/") + 1));
  } catch {
    return path.slice(path.lastIndexOf("/") + 1);
  }
}

/** Where an image is to come from, once the source is resolved. */
interface Origin {
  url: string;
  name: string;
  entry?: CatalogEntry;
}

async function originOf(source: string): Promise<Origin> {
  if (isHttpUrl(source)) {
    try {
      new URL(source);
    } catch {
      throw new UsageError(`invalid URL '${source}'`);
    }
    const name = fileNameOf(source);
    if (name === "") throw new UsageError(`URL '${source}' names no file`);
    return { url: source, name };
  }
  const entry = catalogEntry(await loadCatalog(), source);
  return { url: entry.url, name: fileNameOf(entry.url), entry };
}

/** The checksum files consulted for `origin`, in order. */
function checksumFiles(origin: Origin): string[] {
  if (origin.entry?.checksums) return [origin.entry.checksums];
  const dir = origin.url.slice(0, origin.url.lastIndexOf("/") + 1);
  return [`${dir}SHA256SUMS`, `${dir}SHA512SUMS`];
}

/**
 * The digest the image must have and how it was learnt: `--sha256`, the catalog's sha256, or the
 * first checksum file beside it that lists it. Undefined only with --insecure-no-checksum.
 */
async function expectedChecksum(
  origin: Origin,
  request: PullRequest,
  onProgress?: (progress: PullProgress) => void,
): Promise<{ sum?: Checksum; verified: string }> {
  if (request.sha256 !== undefined) {
    const sum = parseSha256(request.sha256);
    if (!sum) throw new UsageError(`invalid --sha256 '${request.sha256}': give 64 hex digits`);
    return { sum, verified: "sha256 given with --sha256" };
  }
  if (origin.entry?.sha256) {
    return {
      sum: { algorithm: "sha256", hex: origin.entry.sha256 },
      verified: `sha256 from the catalog entry '${origin.entry.name}'`,
    };
  }
  if (request.insecure) return { verified: "not verified (--insecure-no-checksum)" };
  const files = checksumFiles(origin);
  for (const file of files) {
    onProgress?.({ step: "checksums", url: file });
    const text = await fetchText(file);
    if (text === undefined) continue;
    const sum = checksumFor(parseChecksums(text), origin.name);
    if (sum) return { sum, verified: `${sum.algorithm} listed in ${file}` };
  }
  throw new UsageError(
    `no checksum for ${origin.name}: ${files.join(" and ")} ${
      files.length > 1 ? "do" : "does"
    } not list it; give --sha256 HEX, or --insecure-no-checksum to use it unverified`,
  );
}

/**
 * Pulls `request.source` (an http(s) URL or a catalog name) into the cache, or finds it there:
 * downloaded once, resumed after an interruption, verified before it is cached. A mismatch, a
 * missing checksum, a cut-off or non-image download is a UsageError (exit 3) with nothing cached.
 */
export async function pullImage(
  env: VmEnv,
  request: PullRequest,
  onProgress?: (progress: PullProgress) => void,
): Promise<Pulled> {
  const origin = await originOf(request.source);
  const dataDir = env.dirs.dataDir;
  let expected: { sum?: Checksum; verified: string };
  try {
    expected = await expectedChecksum(origin, request, onProgress);
  } catch (error) {
    // Offline: a copy fetched and verified earlier still serves, with a word.
    const cached = cachedByUrl(dataDir, origin.url);
    if (!cached || error instanceof UsageError) throw error;
    env.warn?.(
      `${(error as Error).message}; using the copy of ${origin.name} fetched ${
        cached.fetched_at.slice(0, 10)
      }`,
    );
    return { image: cached, fetched: false };
  }
  const find = () =>
    expected.sum ? cachedByChecksum(dataDir, expected.sum) : cachedByUrl(dataDir, origin.url);
  const found = find();
  if (found) return { image: await remember(env, found, origin.url), fetched: false };
  const lock = await acquireLock(
    `${env.dirs.runtimeDir}/locks/image-${sha256Hex(origin.url).slice(0, 16)}.lock`,
    { timeoutMs: MAX_WAIT_S * 1000, what: `the download of ${origin.url}` },
  );
  try {
    const again = find(); // another qvm finished it while this one waited
    if (again) return { image: await remember(env, again, origin.url), fetched: false };
    const part = preparePart(dataDir, origin.url);
    await downloadToPart(origin.url, part, {
      onProgress: (p) => onProgress?.({ step: "download", name: origin.name, ...p }),
    });
    const verified = await verifyDownload(part, {
      url: origin.url,
      name: origin.name,
      alias: origin.entry?.name,
      expected: expected.sum,
      verified: expected.verified,
      format: origin.entry?.format,
    }, (algorithm) => onProgress?.({ step: "verify", name: origin.name, algorithm }));
    const cache = await cacheLock(env);
    try {
      return { image: admit(dataDir, verified), fetched: true };
    } finally {
      cache.release();
    }
  } finally {
    lock.release();
  }
}

async function remember(env: VmEnv, image: CachedImage, url: string): Promise<CachedImage> {
  if (image.urls.includes(url)) return image;
  const lock = await cacheLock(env);
  try {
    return addUrl(env.dirs.dataDir, image, url);
  } finally {
    lock.release();
  }
}

/** A cached image with the VMs standing on it, for `image ls`. */
export interface ImageListing {
  images: (CachedImage & { vms: string[] })[];
  partial: PartialDownload[];
}

/** The cached images (with the names of the VMs using each) and the unfinished downloads. */
export function listImages(env: VmEnv): ImageListing {
  const images = listCached(env.dirs.dataDir).map((image) => ({
    ...image,
    vms: imageUsers(env.store, image).map((vm) => vm.name),
  }));
  return { images, partial: listPartials(env.dirs.dataDir) };
}

/**
 * The cached images `ref` names: an id (12 or more hex digits of its SHA-256), a catalog name,
 * a URL or a file name it was fetched as.
 */
function matching(images: readonly CachedImage[], ref: string): CachedImage[] {
  const lower = ref.toLowerCase();
  if (/^[0-9a-f]{6,64}$/.test(lower)) {
    const byId = images.filter((i) => i.sha256.startsWith(lower));
    if (byId.length > 0) return byId;
  }
  return images.filter((i) => i.alias === ref || i.urls.includes(ref) || i.name === ref);
}

/** What `removeImages` removed. */
export interface Removed {
  images: CachedImage[];
  partial: PartialDownload[];
}

/**
 * Removes the cached images (and unfinished downloads) `refs` name, under the cache lock. Refused
 * (UsageError, nothing removed) when a ref names nothing, or an image is the base of a VM's root
 * disk: its overlay would lose its data.
 */
export async function removeImages(env: VmEnv, refs: readonly string[]): Promise<Removed> {
  const lock = await cacheLock(env);
  try {
    const dataDir = env.dirs.dataDir;
    const images = listCached(dataDir);
    const partials = listPartials(dataDir);
    const chosen = new Map<string, CachedImage>();
    const chosenPartials = new Map<string, PartialDownload>();
    for (const ref of refs) {
      const found = matching(images, ref);
      const partial = partials.filter((p) => p.url === ref);
      if (found.length === 0 && partial.length === 0) {
        throw new UsageError(`no cached image '${ref}' (see 'qvm image ls')`);
      }
      for (const image of found) chosen.set(image.sha256, image);
      for (const p of partial) chosenPartials.set(p.url, p);
    }
    for (const image of chosen.values()) {
      const users = imageUsers(env.store, image).map((vm) => vm.name);
      if (users.length > 0) {
        throw new UsageError(
          `image ${image.id} (${image.alias ?? image.name}) is the base of VM${
            users.length > 1 ? "s" : ""
          } ${users.map((u) => `'${u}'`).join(", ")}: remove ${
            users.length > 1 ? "them" : "it"
          } first (qvm rm ${users.join(" ")} --delete-storage)`,
        );
      }
    }
    for (const image of chosen.values()) removeCached(dataDir, image);
    for (const partial of chosenPartials.values()) removePart(partial.part);
    return { images: [...chosen.values()], partial: [...chosenPartials.values()] };
  } finally {
    lock.release();
  }
}
