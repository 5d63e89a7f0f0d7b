/**
 * Running `virsh -c URI ...` (libvirt-clients) to define and start domains and to make and fill
 * storage volumes, locally or on another host (`qemu+ssh://`). Each failure is one QvmError line
 * (exit 1) with libvirt's own words. The domain XML goes to virsh on its stdin: no file holding
 * it (cloud-init data included) is ever written.
 */
import { QvmError, TimeoutError, UsageError } from "../errors.ts";

/** How long one virsh call may take (an SSH connection that hangs must not hang qvm). */
const VIRSH_TIMEOUT_MS = 120_000;
/** How long an upload may go without moving a byte before it counts as hung. */
const STALL_MS = 120_000;
/** How often an upload's progress is read. */
const POLL_MS = 250;

/** The absolute path of `virsh` on PATH, or undefined. */
export function findVirsh(): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    try {
      if (Deno.statSync(`${dir}/virsh`).isFile) return `${dir}/virsh`;
    } catch { /* not here */ }
  }
  return undefined;
}

/** virsh's error lines as one line (`error: a\nerror: b` → `a: b`). */
export function virshError(stderr: string): string {
  const lines = stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const errors = lines.filter((l) => l.startsWith("error:")).map((l) => l.slice(6).trim());
  const picked = errors.length > 0 ? errors : lines;
  return picked.join(": ").replace(/\s+/g, " ") || "virsh failed without a message";
}

interface VirshResult {
  ok: boolean;
  stdout: string;
  error: string;
}

/** Options of one virsh call. */
interface VirshOptions {
  /** Text written to virsh's stdin (then closed). */
  stdin?: string;
  /**
   * Ends the call early (virsh gets SIGTERM); the call then throws the signal's reason, so a
   * caller that aborts with an error of its own gets that error back.
   */
  signal?: AbortSignal;
  /** Called with virsh's pid once it runs (to watch an upload). */
  onSpawn?: (pid: number) => void;
  /** False: no time limit (an upload reports its own stalls). */
  timeout?: boolean;
}

function virshBinary(): string {
  const binary = findVirsh();
  if (binary === undefined) {
    throw new QvmError(
      "virsh not found: install libvirt-clients (e.g. apt-get install libvirt-clients)",
    );
  }
  return binary;
}

async function virsh(
  uri: string,
  args: string[],
  options: VirshOptions = {},
): Promise<VirshResult> {
  const binary = virshBinary();
  options.signal?.throwIfAborted();
  const timeout = options.timeout === false ? undefined : AbortSignal.timeout(VIRSH_TIMEOUT_MS);
  const signals = [timeout, options.signal].filter((s): s is AbortSignal => s !== undefined);
  let out: Deno.CommandOutput;
  try {
    const child = new Deno.Command(binary, {
      args: ["-q", "-c", uri, ...args],
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
      signal: signals.length === 0 ? undefined : AbortSignal.any(signals),
    }).spawn();
    options.onSpawn?.(child.pid);
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(options.stdin)).catch(() => {});
      await writer.close().catch(() => {});
    }
    out = await child.output();
  } catch (err) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (timeout?.aborted) {
      throw new TimeoutError(`virsh -c ${uri} ${args[0]} did not answer within 120 s`);
    }
    throw new QvmError(`cannot run virsh: ${(err as Error).message}`);
  }
  // Killed by the caller's signal: whatever virsh printed, the caller's reason is the story.
  if (options.signal?.aborted) throw options.signal.reason;
  if (timeout?.aborted) {
    throw new TimeoutError(`virsh -c ${uri} ${args[0]} did not answer within 120 s`);
  }
  const decoder = new TextDecoder();
  return {
    ok: out.success,
    stdout: decoder.decode(out.stdout),
    error: virshError(decoder.decode(out.stderr)),
  };
}

/** The names of every domain defined at `uri`; refuses (exit 1) when libvirt cannot be reached. */
async function domainNames(uri: string, signal?: AbortSignal): Promise<string[]> {
  const listed = await virsh(uri, ["list", "--all", "--name"], { signal });
  if (!listed.ok) throw new QvmError(`cannot reach libvirt at ${uri}: ${listed.error}`);
  return listed.stdout.split("\n").map((l) => l.trim()).filter((l) => l !== "");
}

/**
 * Refuses (exit 1) when libvirt cannot be reached at `uri` or a domain named `name` is already
 * defined there (define would silently replace it).
 */
export async function checkDomainFree(
  options: { uri: string; name: string; signal?: AbortSignal },
): Promise<void> {
  const { uri, name } = options;
  if ((await domainNames(uri, options.signal)).includes(name)) {
    throw new QvmError(`a domain named '${name}' is already defined at ${uri}`);
  }
}

/** True when a domain named `name` is defined at `uri` (asked without any signal of the caller). */
export async function domainDefined(options: { uri: string; name: string }): Promise<boolean> {
  return (await domainNames(options.uri)).includes(options.name);
}

/**
 * Defines domain `name` from `xml` at `uri`, the XML passed on virsh's stdin. The caller has
 * checked with `checkDomainFree` that no domain of that name is there (define would silently
 * replace it). Refuses (exit 1) when libvirt rejects the XML.
 */
export async function defineDomain(
  options: { uri: string; name: string; xml: string; signal?: AbortSignal },
): Promise<void> {
  const { uri, name, signal } = options;
  const defined = await virsh(uri, ["define", "/dev/stdin"], { stdin: options.xml, signal });
  if (!defined.ok) throw new QvmError(`libvirt at ${uri} refused '${name}': ${defined.error}`);
}

/** Starts the defined domain `name` at `uri`. */
export async function startDomain(options: { uri: string; name: string }): Promise<void> {
  const started = await virsh(options.uri, ["start", options.name]);
  if (!started.ok) {
    throw new QvmError(
      `libvirt at ${options.uri} could not start '${options.name}' (it stays defined there): ${started.error}`,
    );
  }
}

/** Where volumes go: a storage pool at a libvirt URI. */
export interface PoolTarget {
  uri: string;
  pool: string;
  signal?: AbortSignal;
}

/**
 * The volumes of the pool, by name: `wanted` names → their paths on the pool's host (absent when
 * there is no such volume). One call, so a remote URI costs one connection. Refuses (UsageError,
 * exit 3) a pool that does not exist at the URI or is not running; exit 1 when libvirt cannot be
 * reached there.
 */
export async function findVolumes(
  target: PoolTarget,
  wanted: readonly string[],
): Promise<Map<string, string>> {
  const { uri, pool, signal } = target;
  const listed = await virsh(uri, ["vol-list", "--pool", pool], { signal });
  if (!listed.ok) {
    if (/storage pool not found/i.test(listed.error)) {
      throw new UsageError(`there is no storage pool '${pool}' at ${uri} (see virsh pool-list)`);
    }
    if (/not active/i.test(listed.error)) {
      throw new UsageError(
        `storage pool '${pool}' at ${uri} is not running (virsh pool-start ${pool})`,
      );
    }
    throw new QvmError(`cannot list the volumes of pool '${pool}' at ${uri}: ${listed.error}`);
  }
  // Lines read ` NAME   PATH`; names may hold spaces, so each wanted name is looked for whole.
  const found = new Map<string, string>();
  for (const line of listed.stdout.split("\n").map((l) => l.trim())) {
    for (const name of wanted) {
      if (line === name || line.startsWith(`${name} `)) {
        found.set(name, line.slice(name.length).trim());
      }
    }
  }
  return found;
}

/**
 * Creates volume `name` (`capacity` bytes, `format` qcow2 or raw, nothing allocated beforehand)
 * in the pool. A volume that exists already is a UsageError and is left alone.
 */
export async function createVolume(
  target: PoolTarget,
  volume: { name: string; capacity: number; format: string },
): Promise<void> {
  const { uri, pool, signal } = target;
  const { name } = volume;
  const made = await virsh(uri, [
    "vol-create-as",
    pool,
    name,
    `${volume.capacity}b`,
    // Sparse: only what the upload writes is allocated (a 10G raw disk is not 10G there).
    "--allocation",
    "0",
    "--format",
    volume.format,
  ], { signal });
  if (!made.ok) {
    if (/exists already/i.test(made.error)) {
      throw new UsageError(`volume '${name}' already exists in pool '${pool}' at ${uri}`);
    }
    throw new QvmError(`cannot create volume '${name}' in pool '${pool}' at ${uri}: ${made.error}`);
  }
}

/** Deletes volume `name` (asked without any signal of the caller: it is clean-up). */
export async function deleteVolume(target: PoolTarget, name: string): Promise<void> {
  const gone = await virsh(target.uri, ["vol-delete", "--pool", target.pool, name]);
  if (!gone.ok) {
    throw new QvmError(
      `cannot delete volume '${name}' in pool '${target.pool}' at ${target.uri}: ${gone.error}`,
    );
  }
}

/** How far virsh (pid `pid`) has read `file`: the offset of its open file, or undefined. */
function readOffset(pid: number, file: string): number | undefined {
  try {
    for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
      let link: string;
      try {
        link = Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`);
      } catch {
        continue;
      }
      if (link !== file) continue;
      const info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${entry.name}`);
      const pos = /^pos:\s*(\d+)$/m.exec(info);
      if (pos) return Number(pos[1]);
    }
  } catch { /* not started yet, or ended */ }
  return undefined;
}

/**
 * Uploads `file` into volume `name` through libvirt (`virsh vol-upload --sparse`: holes are not
 * sent). `onBytes` is told how far it got, read from virsh's open file every 250 ms; an upload
 * that moves no byte for 120 s is ended (TimeoutError).
 */
export async function uploadVolume(
  target: PoolTarget,
  upload: { name: string; file: string; onBytes?: (done: number) => void },
): Promise<void> {
  const { uri, pool } = target;
  const { name, file } = upload;
  let real = file;
  try {
    real = Deno.realPathSync(file);
  } catch { /* virsh will say */ }
  const stalled = new AbortController();
  let pid: number | undefined;
  let last = -1;
  let moved = Date.now();
  const timer = setInterval(() => {
    if (pid === undefined) return;
    const at = readOffset(pid, real);
    if (at !== undefined && at !== last) {
      last = at;
      moved = Date.now();
      upload.onBytes?.(at);
    } else if (Date.now() - moved > STALL_MS) {
      stalled.abort(
        new TimeoutError(
          `uploading ${file} to volume '${name}' at ${uri} moved no data for 120 s`,
        ),
      );
    }
  }, POLL_MS);
  try {
    const signals = [stalled.signal, target.signal].filter((s): s is AbortSignal => !!s);
    const sent = await virsh(uri, ["vol-upload", "--pool", pool, "--sparse", name, file], {
      signal: AbortSignal.any(signals),
      timeout: false,
      onSpawn: (p) => pid = p,
    });
    if (!sent.ok) {
      throw new QvmError(`cannot upload ${file} to volume '${name}' at ${uri}: ${sent.error}`);
    }
  } finally {
    clearInterval(timer);
  }
}
