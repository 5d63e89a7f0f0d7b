/**
 * A local HTTP server for image downloads in tests (Deno.serve on 127.0.0.1): files by path,
 * from bytes or from a file on disk, with `Range`/`If-Range` (ETag) answered as a web server
 * would, every request recorded, and a way to cut a transfer short (the connection drops after
 * N bytes of the body, as a network failure would).
 */

/** What the server serves at one path. */
export type Served = { bytes: Uint8Array } | { file: string };

/** One request the server saw. */
export interface SeenRequest {
  path: string;
  range: string | null;
}

/** A running server; `close()` in `finally`. */
export interface ImageServer {
  /** `http://127.0.0.1:PORT` (no trailing slash). */
  base: string;
  files: Map<string, Served>;
  requests: SeenRequest[];
  /** Paths whose body is cut after this many bytes (then the connection drops). */
  cutAfter: Map<string, number>;
  close(): Promise<void>;
}

function sizeOf(served: Served): number {
  return "bytes" in served ? served.bytes.length : Deno.statSync(served.file).size;
}

function etagOf(served: Served): string {
  if ("bytes" in served) return `"b${served.bytes.length}-${served.bytes[0] ?? 0}"`;
  const info = Deno.statSync(served.file);
  return `"f${info.size}-${info.mtime?.getTime() ?? 0}"`;
}

/** A body stream of `served` from `start` to `end` (exclusive); ends after `cut` bytes. */
function bodyOf(served: Served, start: number, end: number, cut?: number): ReadableStream {
  let position = start;
  let sent = 0;
  let file: Deno.FsFile | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (cut !== undefined && sent >= cut) {
        file?.close();
        controller.close(); // short of content-length: the connection drops
        return;
      }
      if (position >= end) {
        file?.close();
        controller.close();
        return;
      }
      let length = Math.min(1 << 20, end - position);
      if (cut !== undefined) length = Math.min(length, cut - sent);
      let chunk: Uint8Array;
      if ("bytes" in served) {
        chunk = served.bytes.slice(position, position + length);
      } else {
        file ??= await Deno.open(served.file, { read: true });
        await file.seek(position, Deno.SeekMode.Start);
        chunk = new Uint8Array(length);
        let got = 0;
        while (got < length) {
          const n = await file.read(chunk.subarray(got));
          if (n === null) break;
          got += n;
        }
        chunk = chunk.subarray(0, got);
      }
      position += chunk.length;
      sent += chunk.length;
      controller.enqueue(chunk);
    },
    cancel() {
      file?.close();
    },
  });
}

/** Starts the server on a free port of 127.0.0.1. */
export function serveImages(files: Record<string, Served> = {}): ImageServer {
  const state = {
    files: new Map(Object.entries(files)),
    requests: [] as SeenRequest[],
    cutAfter: new Map<string, number>(),
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const path = new URL(request.url).pathname;
    const range = request.headers.get("range");
    state.requests.push({ path, range });
    const served = state.files.get(path);
    if (!served) return new Response("not found", { status: 404 });
    const size = sizeOf(served);
    const etag = etagOf(served);
    const cut = state.cutAfter.get(path);
    const ifRange = request.headers.get("if-range");
    const match = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
    if (match && (ifRange === null || ifRange === etag)) {
      const start = Number(match[1]);
      const end = match[2] === "" ? size : Math.min(Number(match[2]) + 1, size);
      if (start >= size) {
        return new Response(null, {
          status: 416,
          headers: { "content-range": `bytes */${size}` },
        });
      }
      return new Response(bodyOf(served, start, end, cut), {
        status: 206,
        headers: {
          "content-length": String(end - start),
          "content-range": `bytes ${start}-${end - 1}/${size}`,
          etag,
          "accept-ranges": "bytes",
        },
      });
    }
    return new Response(bodyOf(served, 0, size, cut), {
      headers: { "content-length": String(size), etag, "accept-ranges": "bytes" },
    });
  });
  return {
    base: `http://127.0.0.1:${server.addr.port}`,
    ...state,
    close: () => server.shutdown(),
  };
}

/** The SHA-256 of `file` (sha256sum), as lowercase hex. */
export async function sha256OfFile(file: string): Promise<string> {
  const out = await new Deno.Command("sha256sum", { args: ["--", file], stdout: "piped" })
    .output();
  return new TextDecoder().decode(out.stdout).split(/\s/)[0];
}

/** The SHA-256 of `bytes` (WebCrypto), as lowercase hex. */
export async function sha256Of(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
