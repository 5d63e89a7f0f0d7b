/**
 * HTTP(S) downloads for the image cache: a file is fetched into a `.part` file beside a small
 * record of where it comes from (URL, ETag, Last-Modified, length), so an interrupted download
 * resumes with a `Range` request (guarded by `If-Range`: a file changed on the server starts over)
 * instead of starting again. Nothing here judges what was downloaded; the cache verifies it.
 */
import { NotFoundError, QvmError, UsageError } from "../errors.ts";

/** A `.part` file and the record of its origin. */
export interface PartFile {
  file: string;
  meta: string;
}

/** What the record of a `.part` file holds. */
interface PartMeta {
  url: string;
  etag?: string;
  last_modified?: string;
  total?: number;
}

/** Where a download stands, for a progress line. */
export interface DownloadProgress {
  received: number;
  /** The whole file's length, when the server said. */
  total?: number;
  /** Bytes that were already there from an earlier, interrupted download. */
  resumedFrom: number;
}

/** How long a download may go without receiving a byte before it counts as stalled. */
const STALL_MS = 60_000;

/** The largest checksum file qvm reads (distributions' are a few KiB). */
const MAX_TEXT_BYTES = 1 << 20;

function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^error sending request for url \([^)]*\): /, "").split("\n")[0];
}

/** An HTTP error status as a QvmError: 4xx is the request's fault (exit 3), others exit 1. */
function statusError(url: string, response: Response): QvmError {
  const what = `${url}: the server answered ${response.status} ${response.statusText}`.trim();
  if (response.status === 404 || response.status === 410) return new NotFoundError(what);
  if (response.status >= 400 && response.status < 500) return new UsageError(what);
  return new QvmError(what);
}

async function request(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { ...init, redirect: "follow" });
  } catch (error) {
    if (init.signal?.aborted) throw new QvmError(`${url}: no data for ${STALL_MS / 1000} s`);
    throw new QvmError(`cannot download ${url}: ${reasonOf(error)}`, { cause: error });
  }
}

/**
 * A small text file (a checksum file): its text, or undefined when the server has no such file
 * (404, 410). At most 1 MiB.
 */
export async function fetchText(url: string): Promise<string | undefined> {
  const response = await request(url, {
    headers: { "accept-encoding": "identity" },
    signal: AbortSignal.timeout(STALL_MS),
  });
  if (response.status === 404 || response.status === 410) {
    await response.body?.cancel();
    return undefined;
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw statusError(url, response);
  }
  const chunks: Uint8Array[] = [];
  let length = 0;
  try {
    for await (const chunk of response.body ?? []) {
      length += chunk.length;
      if (length > MAX_TEXT_BYTES) {
        await response.body?.cancel();
        throw new UsageError(`${url}: larger than 1 MiB, not a checksum file`);
      }
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof QvmError) throw error;
    throw new QvmError(`cannot download ${url}: ${reasonOf(error)}`, { cause: error });
  }
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return new TextDecoder().decode(bytes);
}

function readMeta(part: PartFile, url: string): PartMeta | undefined {
  try {
    const meta = JSON.parse(Deno.readTextFileSync(part.meta)) as PartMeta;
    return meta.url === url ? meta : undefined;
  } catch {
    return undefined;
  }
}

function sizeOf(file: string): number {
  try {
    return Deno.statSync(file).size;
  } catch {
    return 0;
  }
}

/** Bytes of `url` already in `part` from an earlier download (0 if none or another URL's). */
export function resumableBytes(part: PartFile, url: string): number {
  return readMeta(part, url) ? sizeOf(part.file) : 0;
}

/** Removes a `.part` file and its record. */
export function removePart(part: PartFile): void {
  for (const file of [part.file, part.meta]) {
    try {
      Deno.removeSync(file);
    } catch { /* not there */ }
  }
}

/** `bytes N-M/TOTAL` → N and TOTAL (TOTAL undefined for `*`). */
function contentRange(header: string | null): { start: number; total?: number } | undefined {
  const match = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header?.trim() ?? "");
  if (!match) return undefined;
  return { start: Number(match[1]), total: match[2] === "*" ? undefined : Number(match[2]) };
}

/**
 * Downloads `url` into `part.file`, resuming from what an earlier attempt left there. Returns the
 * file's length. A server error, a stall or a connection cut short throws, keeping what arrived
 * for the next attempt (a transfer that ends short of its announced length is a UsageError).
 */
export async function downloadToPart(
  url: string,
  part: PartFile,
  options: { onProgress?: (progress: DownloadProgress) => void } = {},
): Promise<number> {
  const meta = readMeta(part, url);
  const have = meta ? sizeOf(part.file) : 0;
  const headers: Record<string, string> = { "accept-encoding": "identity" };
  if (have > 0) {
    headers.range = `bytes=${have}-`;
    const validator = meta?.etag ?? meta?.last_modified;
    if (validator) headers["if-range"] = validator;
  }
  const stall = new AbortController();
  let timer = setTimeout(() => stall.abort(), STALL_MS);
  const alive = () => {
    clearTimeout(timer);
    timer = setTimeout(() => stall.abort(), STALL_MS);
  };
  try {
    const response = await request(url, { headers, signal: stall.signal });
    if (response.status === 416 && have > 0 && meta?.total === have) {
      await response.body?.cancel();
      return have; // already complete
    }
    if (response.status === 416) {
      await response.body?.cancel();
      removePart(part);
      clearTimeout(timer);
      return await downloadToPart(url, part, options);
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw statusError(url, response);
    }
    const range = response.status === 206
      ? contentRange(response.headers.get("content-range"))
      : undefined;
    if (response.status === 206 && range?.start !== have) {
      await response.body?.cancel();
      throw new QvmError(`${url}: the server resumed at the wrong offset`);
    }
    const from = response.status === 206 ? have : 0;
    const length = Number(response.headers.get("content-length") ?? NaN);
    const total = range?.total ?? (Number.isSafeInteger(length) ? from + length : undefined);
    const record: PartMeta = {
      url,
      ...(response.headers.get("etag") ? { etag: response.headers.get("etag")! } : {}),
      ...(response.headers.get("last-modified")
        ? { last_modified: response.headers.get("last-modified")! }
        : {}),
      ...(total !== undefined ? { total } : {}),
    };
    Deno.writeTextFileSync(part.meta, JSON.stringify(record) + "\n", { mode: 0o600 });
    const file = Deno.openSync(part.file, {
      write: true,
      create: true,
      mode: 0o600,
      ...(from > 0 ? { append: true } : { truncate: true }),
    });
    let received = from;
    options.onProgress?.({ received, total, resumedFrom: from });
    try {
      for await (const chunk of response.body ?? []) {
        alive();
        let offset = 0;
        while (offset < chunk.length) offset += file.writeSync(chunk.subarray(offset));
        received += chunk.length;
        options.onProgress?.({ received, total, resumedFrom: from });
      }
    } catch (error) {
      if (total === undefined) {
        throw new QvmError(`download of ${url} failed: ${reasonOf(error)}`, { cause: error });
      }
    } finally {
      file.close();
    }
    if (total !== undefined && received !== total) {
      throw new UsageError(
        `download of ${url} ended after ${received} of ${total} bytes; what arrived is kept ` +
          "and the next try resumes it",
      );
    }
    return received;
  } catch (error) {
    if (stall.signal.aborted && !(error instanceof UsageError)) {
      throw new QvmError(
        `download of ${url} stalled (no data for ${STALL_MS / 1000} s); what arrived is kept ` +
          "and the next try resumes it",
      );
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
