/**
 * `qvm cp` through the guest agent. Contents move in 4 MiB chunks with `guest-file-read` and
 * `guest-file-write` (base64 in the agent's JSON; its read limit is 48 MB), so any size takes
 * constant memory and every byte value passes. The guest's side of the work (what is at a path,
 * making folders, modes and owners, moving a finished file into place, listing a tree) is done
 * by small POSIX `sh` scripts run with `guest-exec`, batched: under TCG one costs a quarter of a
 * second to seconds, so a copy runs two or three of them however many files it moves.
 *
 * A directory in the guest is listed with GNU `find -printf` (NUL-separated, so any file name
 * works) into a temporary file, read back like any other file. Not `tar` through `guest-exec`:
 * the agent hands a command's output over only when it has ended, all at once, capped at 16 MB;
 * nor a tar file in the guest, which would need the tree's size again in free space.
 *
 * No file is ever half-written at its name. In the guest, a file is written under a temporary
 * name in a private (0700, root's) folder beside its destination, since qemu-ga makes new files
 * 0666, then given its owner and mode and moved into place; on the host, a 0600 temporary file
 * beside the destination is renamed. A failed or interrupted copy removes what it had not
 * finished; folders it made get their modes (they stay 0700 while the copy fills them).
 */
import { NotFoundError, QvmError, UsageError } from "../errors.ts";
import {
  agentExec,
  agentFileClose,
  agentFileOpen,
  agentFileRead,
  agentFileWrite,
} from "./agent.ts";
import { shellQuote } from "../shell.ts";
import {
  baseName,
  type CopyOptions,
  type CopyResult,
  type DestState,
  dirName,
  joinPath,
  kindOfMode,
  parseTreeListing,
  pathInDir,
  type PathKind,
  type PlannedSource,
  planTargets,
  TREE_FORMAT,
  type TreeEntry,
} from "./copy_plan.ts";

/** Bytes per `guest-file-read`/`-write` call. */
export const CHUNK = 4 * 1024 * 1024;
/** Guest entries handled per `guest-exec` (keeps each command line well under ARG_MAX). */
const BATCH_ENTRIES = 256;
/** Bytes of quoted paths per script: `sh -c` takes its script as one argument, at most 128 KiB. */
const BATCH_BYTES = 64 * 1024;
/** How long one guest script may run. */
const SCRIPT_MS = 120_000;

/** The copy was interrupted (Ctrl-C); exit 130 as a shell reports it. */
export class CopyInterrupted extends QvmError {
  override exitCode = 130;
  override name = "CopyInterrupted";
}

/** What the agent copy needs to know. */
export interface AgentSide {
  socket: string;
  /** The VM's name, for messages. */
  vm: string;
  /** The guest user whose home relative paths start in and who owns what is made ("root"). */
  user: string;
  options: CopyOptions;
}

// ---------------------------------------------------------------------------------------------
// The host side

/** A host source, checked. */
export interface HostSource extends PlannedSource {
  mode: number;
  size: number;
}

/** One entry below a directory being copied, on either side. */
interface Entry {
  /** Path below the copied directory (`a/b.txt`). */
  rel: string;
  kind: "file" | "dir" | "symlink" | "other";
  mode: number;
  size: number;
  /** A symlink's target. */
  link: string;
}

/** Checks every host source exists and is a file, or a directory with `recursive`. */
export async function checkHostSources(
  paths: readonly string[],
  recursive: boolean,
): Promise<HostSource[]> {
  const out: HostSource[] = [];
  for (const path of paths) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new NotFoundError(`qvm cp: cannot stat '${path}': no such file or directory`);
      }
      if (error instanceof Deno.errors.NotADirectory) {
        throw new NotFoundError(`qvm cp: cannot stat '${path}': not a directory`);
      }
      throw error;
    }
    const kind = checkSourceKind(path, kindOfMode(info.mode ?? 0), recursive);
    out.push({ shown: path, path, kind, mode: (info.mode ?? 0o644) & 0o7777, size: info.size });
  }
  return out;
}

function checkSourceKind(shown: string, kind: PathKind, recursive: boolean): "file" | "dir" {
  if (kind === "dir" && !recursive) {
    throw new UsageError(`qvm cp: '${shown}' is a directory (copy it with -r)`);
  }
  if (kind !== "file" && kind !== "dir") {
    throw new UsageError(`qvm cp: '${shown}' is not a regular file or directory`);
  }
  return kind;
}

/** Every entry below host directory `root`, parents before children, names sorted. */
async function walkHost(root: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const visit = async (rel: string) => {
    const names: string[] = [];
    for await (const entry of Deno.readDir(rel ? joinPath(root, rel) : root)) {
      names.push(entry.name);
    }
    names.sort();
    for (const name of names) {
      const childRel = rel ? `${rel}/${name}` : name;
      const path = joinPath(root, childRel);
      const info = await Deno.lstat(path);
      const mode = (info.mode ?? 0) & 0o7777;
      if (info.isSymlink) {
        out.push({
          rel: childRel,
          kind: "symlink",
          mode,
          size: 0,
          link: await Deno.readLink(path),
        });
      } else if (info.isDirectory) {
        out.push({ rel: childRel, kind: "dir", mode, size: 0, link: "" });
        await visit(childRel);
      } else {
        out.push({
          rel: childRel,
          kind: info.isFile ? "file" : "other",
          mode,
          size: info.size,
          link: "",
        });
      }
    }
  };
  await visit("");
  return out;
}

/** The listing of a guest tree, as entries. */
function guestEntries(listing: readonly TreeEntry[]): Entry[] {
  const kinds: Record<string, Entry["kind"]> = { f: "file", d: "dir", l: "symlink" };
  return listing.map((e) => ({
    rel: e.rel,
    kind: kinds[e.type] ?? "other",
    mode: e.mode,
    size: e.size,
    link: e.link,
  }));
}

async function hostKind(path: string): Promise<PathKind> {
  try {
    return kindOfMode((await Deno.stat(path)).mode ?? 0);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return "missing";
    }
    throw error;
  }
}

/** Reads up to `buffer.length` bytes (fewer only at the end of the file). */
async function readFull(file: Deno.FsFile, buffer: Uint8Array): Promise<number> {
  let got = 0;
  while (got < buffer.length) {
    const n = await file.read(buffer.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got;
}

async function writeFull(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await file.write(bytes.subarray(offset));
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** `/a/b/` → `/a/b`; `/` stays. */
function trimSlashes(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed === "" ? "/" : trimmed;
}

/** Counts and progress of one copy. */
class Tally {
  files = 0;
  directories = 0;
  symlinks = 0;
  bytes = 0;
  skipped = 0;
  readonly total: number;
  readonly #options: CopyOptions;

  constructor(total: number, options: CopyOptions) {
    this.total = total;
    this.#options = options;
    options.onProgress?.({ done: 0, total, current: "" });
  }

  moved(n: number, current: string): void {
    this.bytes += n;
    this.#options.onProgress?.({ done: this.bytes, total: this.total, current });
  }

  skip(what: string): void {
    this.skipped++;
    this.#options.warn?.(`skipped '${what}': not a regular file, directory or symlink`);
  }

  checkAborted(): void {
    if (this.#options.signal?.aborted) {
      throw new CopyInterrupted("interrupted; nothing half-copied is left");
    }
  }

  result(): CopyResult {
    const { files, directories, symlinks, bytes, skipped } = this;
    return { via: "agent", files, directories, symlinks, bytes, skipped };
  }
}

// ---------------------------------------------------------------------------------------------
// The guest side. Under TCG each process the guest starts costs tens to hundreds of
// milliseconds, so the scripts start few: the shell's own tests instead of `stat` where they
// do, and one `chown`, `chmod` or `mv` for many files.

/** `word` quoted for `sh`. */
function q(word: string): string {
  return shellQuote([word]);
}

/**
 * What is at guest paths. Words: user, `in` or `out`, the listing format, a temporary file
 * prefix, then the paths. Prints the user's home and `uid:gid` (empty for root), then for each
 * path its absolute form (relative paths, `~` and `~/...` start at the home) and what is there:
 * `in`: `d`, `f`, `o` (other) or `-` (nothing); `out`: `MODE SIZE` from `stat -L` (mode in hex)
 * or `-`, and with a prefix, the file a directory's listing went to (GNU find). NUL-separated.
 */
const PROBE_SCRIPT = `u=$1 way=$2 fmt=$3 tmp=$4; shift 4
e=$(getent passwd "$u" 2>/dev/null) || e=$(grep "^$u:" /etc/passwd) || {
  echo "there is no user '$u' in the guest (yet? qvm wait VM --for ssh waits for cloud-init)" >&2
  exit 3; }
h=\${e#*:*:*:*:*:}; h=\${h%%:*}; [ -n "$h" ] || h=/
o=; if [ "$u" != root ]; then i=\${e#*:*:}; g=\${i#*:}; o=\${i%%:*}:\${g%%:*}; fi
printf '%s\\0%s\\0' "$h" "$o"
set -C; n=0
for p; do
  case $p in ''|'~') p=$h ;; '~/'*) p=$h/\${p#'~/'} ;; /*) ;; *) p=$h/$p ;; esac
  f=
  if [ "$way" = in ]; then
    if [ -d "$p" ]; then s=d; elif [ -f "$p" ]; then s=f; elif [ -e "$p" ]; then s=o; else s=-; fi
  else
    s=$(stat -L -c '%f %s' -- "$p" 2>/dev/null) || s=-
    if [ -n "$tmp" ] && [ -d "$p" ]; then
      n=$((n+1)); f=$tmp-$n
      find -H "$p" -mindepth 1 -printf "$fmt" > "$f" || { rm -f -- "$tmp"-*; exit 1; }
    fi
  fi
  printf '%s\\0%s\\0%s\\0' "$p" "$s" "$f"
done`;

/** A guest script failed: its message, and what it had printed (what it had made). */
class GuestScriptError extends QvmError {
  override name = "GuestScriptError";
  stdout: Uint8Array = new Uint8Array();
}

/** Runs `script` with `sh -c` in the guest (`args` as `$1`...); its stdout, or a GuestScriptError. */
async function guestScript(
  agent: AgentSide,
  script: string,
  args: readonly string[] = [],
): Promise<Uint8Array> {
  const result = await agentExec(agent.socket, ["sh", "-c", script, "sh", ...args], {
    deadline: Date.now() + SCRIPT_MS,
  });
  if (result.code !== 0) {
    const message = new TextDecoder().decode(result.stderr).trim().split("\n").join("; ");
    const error = new GuestScriptError(
      `in VM '${agent.vm}': ${message || `exit code ${result.code}`}`,
    );
    if (result.code === 3) error.exitCode = 3;
    error.stdout = result.stdout;
    throw error;
  }
  return result.stdout;
}

/** Splits `items` into runs that each fit one script: at most BATCH_ENTRIES, about BATCH_BYTES. */
function batches<T>(items: readonly T[], size: (item: T) => number): T[][] {
  const out: T[][] = [];
  let batch: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const n = size(item);
    if (batch.length > 0 && (batch.length >= BATCH_ENTRIES || bytes + n > BATCH_BYTES)) {
      out.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(item);
    bytes += n;
  }
  if (batch.length > 0) out.push(batch);
  return out;
}

/** `items` grouped by `key`, in first-seen order. */
function groupBy<T>(items: readonly T[], key: (item: T) => string): [string, T[]][] {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return [...groups];
}

function nulFields(bytes: Uint8Array): string[] {
  const fields = new TextDecoder().decode(bytes).split("\0");
  fields.pop();
  return fields;
}

/** What the probe found. */
interface Probe {
  /** `uid:gid` of the user, empty for root. */
  owner: string;
  paths: { path: string; kind: PathKind; mode: number; size: number; listing: string }[];
}

async function probe(
  agent: AgentSide,
  paths: readonly string[],
  options: { way: "in" | "out"; listPrefix?: string },
): Promise<Probe> {
  const words = [agent.user, options.way, TREE_FORMAT, options.listPrefix ?? "", ...paths];
  let out: Uint8Array;
  try {
    out = await guestScript(agent, PROBE_SCRIPT, words);
  } catch (error) {
    if (options.listPrefix && /-printf|unrecognized|unknown/i.test((error as Error).message)) {
      throw new QvmError(
        `VM '${agent.vm}' cannot list a directory: copying one out through the agent needs ` +
          "GNU find in the guest (or copy with --via ssh)",
      );
    }
    throw error;
  }
  const fields = nulFields(out);
  const letters: Record<string, PathKind> = { d: "dir", f: "file", o: "other", "-": "missing" };
  const found: Probe["paths"] = [];
  for (let i = 2; i + 2 < fields.length; i += 3) {
    const [path, stat, listing] = fields.slice(i, i + 3);
    if (options.way === "in" || stat === "-") {
      found.push({ path, kind: letters[stat] ?? "other", mode: 0, size: 0, listing });
      continue;
    }
    const [mode, size] = stat.split(" ");
    const bits = parseInt(mode, 16);
    found.push({ path, kind: kindOfMode(bits), mode: bits & 0o7777, size: Number(size), listing });
  }
  if (found.length !== paths.length) {
    throw new QvmError(`VM '${agent.vm}': the answer was cut short`);
  }
  return { owner: fields[1], paths: found };
}

/** Reads a whole (small) guest file, such as a listing. */
async function readGuestFile(agent: AgentSide, path: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const handle = await agentFileOpen(agent.socket, path, "r");
  try {
    for (;;) {
      const { data, eof } = await agentFileRead(agent.socket, handle, CHUNK);
      parts.push(data);
      if (eof || data.length === 0) break;
    }
  } finally {
    await agentFileClose(agent.socket, handle);
  }
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Host → guest

/** One thing to make in the guest. */
interface InItem {
  host: string;
  guest: string;
  entry: Entry;
}

/** A written file or a symlink, waiting in its folder's private folder to be put in place. */
export interface Placed {
  kind: "file" | "symlink";
  /** Where it waits (`DIR/.qvm-cp-TOKEN/NAME`). */
  temp: string;
  dest: string;
  /** The folder it goes to. */
  dir: string;
  mode: number;
  link: string;
}

/**
 * The script that puts `placed` in place: symlinks made, owners set (a file in a folder this copy
 * made gets the user; elsewhere a replaced file keeps its owner, a new one gets the user), modes
 * set, then one `mv` per folder (which replaces a symlink in the way, not following it, and
 * refuses to overwrite a directory). Stops at the first failure.
 */
export function finishScript(
  placed: readonly Placed[],
  owner: string,
  madeDirs: ReadonlySet<string>,
): string {
  const lines = [`o=${q(owner)}`];
  for (const p of placed) {
    if (p.kind === "symlink") lines.push(`ln -s -- ${q(p.link)} ${q(p.temp)} || exit 1`);
  }
  const fresh = placed.filter((p) => madeDirs.has(p.dir));
  if (owner !== "" && fresh.length > 0) {
    lines.push(`chown -h -- "$o" ${fresh.map((p) => q(p.temp)).join(" ")} || exit 1`);
  }
  const old = placed.filter((p) => !madeDirs.has(p.dir));
  if (old.length > 0) {
    lines.push(
      `set -- ${old.map((p) => `${q(p.dest)} ${q(p.temp)}`).join(" ")}`,
      "while [ $# -gt 0 ]; do",
      '  if [ -e "$1" ] || [ -L "$1" ]; then',
      '    w=$(stat -c %u:%g -- "$1") && chown -h -- "$w" "$2" || exit 1',
      '  elif [ -n "$o" ]; then chown -h -- "$o" "$2" || exit 1; fi',
      "  shift 2",
      "done",
    );
  }
  const files = placed.filter((p) => p.kind === "file");
  for (const [mode, group] of groupBy(files, (p) => p.mode.toString(8))) {
    lines.push(`chmod ${mode} -- ${group.map((p) => q(p.temp)).join(" ")} || exit 1`);
  }
  for (const [dir, group] of groupBy(placed, (p) => p.dir)) {
    lines.push(`mv -f -- ${group.map((p) => q(p.temp)).join(" ")} ${q(`${dir}/`)} || exit 1`);
  }
  return lines.join("\n");
}

/**
 * The scripts that end a copy in the guest (one, unless it made very many folders): the private
 * folders go, and folders the copy made get the owner and their modes. Each goes on past a
 * failure, then exits 1.
 */
export function endScripts(
  staging: readonly string[],
  made: readonly { path: string; mode: number }[],
  owner: string,
): string[] {
  const size = (path: string) => q(path).length + 1;
  const lines = batches(staging, size).map((b) => `rm -rf -- ${b.map(q).join(" ")} || r=1`);
  if (owner !== "") {
    for (const b of batches(made.map((d) => d.path), size)) {
      lines.push(`chown -- ${q(owner)} ${b.map(q).join(" ")} || r=1`);
    }
  }
  for (const [mode, group] of groupBy(made, (d) => d.mode.toString(8))) {
    for (const b of batches(group.map((d) => d.path), size)) {
      lines.push(`chmod ${mode} -- ${b.map(q).join(" ")} || r=1`);
    }
  }
  return batches(lines, (line) => line.length).map((b) => ["r=0", ...b, "exit $r"].join("\n"));
}

/** How many bytes a placed file or symlink adds to its finish script. */
function placedSize(p: Placed): number {
  return 3 * q(p.temp).length + q(p.dest).length + q(p.link).length + 64;
}

/** Copies checked host `sources` to `destText` in the guest, by cp's rules. */
export async function copyIn(
  agent: AgentSide,
  sources: readonly HostSource[],
  destText: string,
): Promise<CopyResult> {
  // The destination, its folder, and where each source would land inside it: one round.
  const destWord = destText === "" ? "~" : destText;
  const asked = [destWord, dirName(destWord), ...sources.map((s) => pathInDir(destWord, s.path))];
  const found = await probe(agent, asked, { way: "in" });
  const [destFound, parentFound] = found.paths;
  const dest: DestState = {
    shown: `${agent.vm}:${destText}`,
    path: trimSlashes(destFound.path),
    kind: destFound.kind,
    trailingSlash: destText.endsWith("/"),
    parentIsDir: parentFound.kind === "dir",
  };
  const inside = new Map<string, PathKind>();
  sources.forEach((s, i) => inside.set(pathInDir(dest.path, s.path), found.paths[2 + i].kind));
  const targets = planTargets(sources, dest, (path) => inside.get(path) ?? "missing");

  const items: InItem[] = [];
  for (const target of targets) {
    const source = target.source as HostSource;
    items.push({
      host: source.path,
      guest: target.path,
      entry: { rel: "", kind: source.kind, mode: source.mode, size: source.size, link: "" },
    });
    if (source.kind !== "dir") continue;
    for (const entry of await walkHost(source.path)) {
      items.push({
        host: joinPath(source.path, entry.rel),
        guest: joinPath(target.path, entry.rel),
        entry,
      });
    }
  }
  const total = items.reduce((n, i) => n + (i.entry.kind === "file" ? i.entry.size : 0), 0);
  const tally = new Tally(total, agent.options);
  for (const item of items) if (item.entry.kind === "other") tally.skip(item.host);

  const token = `.qvm-cp-${randomHex(8)}`;
  const dirs = items.filter((i) => i.entry.kind === "dir");
  const modes = new Map(dirs.map((d) => [d.guest, d.entry.mode]));
  const toPlace = items.filter((i) => i.entry.kind === "file" || i.entry.kind === "symlink");
  const staging = [...new Set(toPlace.map((i) => `${dirName(i.guest)}/${token}`))];
  const made = new Set<string>();
  const ending = () =>
    endScripts(
      staging,
      [...made].map((path) => ({ path, mode: modes.get(path) ?? 0o755 })),
      found.owner,
    );
  try {
    tally.checkAborted();
    // Folders first (missing ones made 0700, parents before children), then the private ones.
    for (const batch of batches(dirs, (d) => q(d.guest).length + 1)) {
      const script = [
        "set --",
        `for d in ${
          batch.map((d) => q(d.guest)).join(" ")
        }; do [ -d "$d" ] || set -- "$@" "$d"; done`,
        `[ $# -eq 0 ] || printf '%s\\0' "$@"`,
        '[ $# -eq 0 ] || mkdir -m 700 -- "$@"',
      ].join("\n");
      try {
        nulFields(await guestScript(agent, script)).forEach((d) => made.add(d));
      } catch (error) {
        if (error instanceof GuestScriptError) nulFields(error.stdout).forEach((d) => made.add(d));
        throw error;
      }
    }
    tally.directories = made.size;
    for (const batch of batches(staging, (d) => q(d).length + 1)) {
      await guestScript(agent, `mkdir -m 700 -- ${batch.map(q).join(" ")}`);
    }
    let pending: Placed[] = [];
    let pendingBytes = 0;
    const buffer = new Uint8Array(CHUNK);
    for (const item of toPlace) {
      tally.checkAborted();
      const dir = dirName(item.guest);
      const placed: Placed = {
        kind: item.entry.kind as "file" | "symlink",
        temp: `${dir}/${token}/${baseName(item.guest)}`,
        dest: item.guest,
        dir,
        mode: item.entry.mode,
        link: item.entry.link,
      };
      if (placed.kind === "file") {
        await sendFile(agent, { host: item.host, temp: placed.temp, buffer, tally });
        tally.files++;
      } else {
        tally.symlinks++;
      }
      if (
        pending.length >= BATCH_ENTRIES || pendingBytes + placedSize(placed) > BATCH_BYTES
      ) {
        await guestScript(agent, finishScript(pending, found.owner, made));
        pending = [];
        pendingBytes = 0;
      }
      pending.push(placed);
      pendingBytes += placedSize(placed);
    }
    tally.checkAborted();
    // The last batch and the ending in one script when they fit (the usual case): `exit 1` of
    // the first part skips the second, which the failure path below then runs.
    const [first = "", ...more] = ending();
    const last = pending.length > 0 ? finishScript(pending, found.owner, made) : "";
    if (last !== "" && first !== "" && last.length + first.length > BATCH_BYTES) {
      await guestScript(agent, last);
      await guestScript(agent, first);
    } else if (last !== "" || first !== "") {
      await guestScript(agent, [last, first].filter((part) => part !== "").join("\n"));
    }
    for (const script of more) await guestScript(agent, script);
  } catch (error) {
    try {
      for (const script of ending()) await guestScript(agent, script);
    } catch (cleanup) {
      agent.options.warn?.(`could not tidy up in VM '${agent.vm}': ${(cleanup as Error).message}`);
    }
    throw error;
  }
  return tally.result();
}

/** Streams host file `host` into guest file `temp` in chunks. */
async function sendFile(
  agent: AgentSide,
  job: { host: string; temp: string; buffer: Uint8Array; tally: Tally },
): Promise<void> {
  const { host, temp, buffer, tally } = job;
  using file = await Deno.open(host, { read: true });
  tally.moved(0, host);
  const handle = await agentFileOpen(agent.socket, temp, "w");
  try {
    for (;;) {
      tally.checkAborted();
      const n = await readFull(file, buffer);
      if (n === 0) break;
      await agentFileWrite(agent.socket, handle, buffer.subarray(0, n));
      tally.moved(n, host);
      if (n < buffer.length) break;
    }
  } finally {
    await agentFileClose(agent.socket, handle);
  }
}

// ---------------------------------------------------------------------------------------------
// Guest → host

/** Copies guest `sourceTexts` (as written after `VM:`) to host `destText`, by cp's rules. */
export async function copyOut(
  agent: AgentSide,
  sourceTexts: readonly string[],
  destText: string,
): Promise<CopyResult> {
  const recursive = agent.options.recursive;
  const found = await probe(agent, sourceTexts, {
    way: "out",
    listPrefix: recursive ? `/tmp/.qvm-cp-${randomHex(8)}` : undefined,
  });
  const listings = found.paths.map((p) => p.listing).filter((f) => f !== "");
  try {
    const sources = found.paths.map((p, i) => {
      const shown = `${agent.vm}:${sourceTexts[i]}`;
      if (p.kind === "missing") {
        throw new NotFoundError(`qvm cp: cannot stat '${shown}': no such file or directory`);
      }
      const kind = checkSourceKind(shown, p.kind, recursive);
      return { shown, path: trimSlashes(p.path), kind, mode: p.mode, size: p.size };
    });
    const destKind = await hostKind(destText);
    const dest: DestState = {
      shown: destText,
      path: trimSlashes(destText),
      kind: destKind,
      trailingSlash: destText.endsWith("/"),
      parentIsDir: destKind === "missing" && await hostKind(dirName(destText)) === "dir",
    };
    const inside = new Map<string, PathKind>();
    if (destKind === "dir") {
      for (const s of sources) {
        const path = pathInDir(dest.path, s.path);
        inside.set(path, await hostKind(path));
      }
    }
    const targets = planTargets(sources, dest, (path) => inside.get(path) ?? "missing");
    // The trees, read before anything is copied: the total is known, and a bad listing copies
    // nothing.
    const trees: Entry[][] = [];
    for (const [i, target] of targets.entries()) {
      const listing = found.paths[i].listing;
      if (target.source.kind !== "dir" || listing === "") {
        trees.push([]);
        continue;
      }
      try {
        trees.push(guestEntries(parseTreeListing(new TextDecoder().decode(
          await readGuestFile(agent, listing),
        ))));
      } catch (error) {
        throw new QvmError(`VM '${agent.vm}': ${(error as Error).message}`);
      }
    }
    const total = sources.reduce((n, s) => n + (s.kind === "file" ? s.size : 0), 0) +
      trees.flat().reduce((n, e) => n + (e.kind === "file" ? e.size : 0), 0);
    const tally = new Tally(total, agent.options);
    await fetchAll(agent, { sources, targets: targets.map((t) => t.path), trees, tally });
    return tally.result();
  } finally {
    if (listings.length > 0) {
      await guestScript(agent, 'rm -f -- "$@"', listings).catch(() => {});
    }
  }
}

/** Makes every target on the host: files, folders and their trees, symlinks. */
async function fetchAll(
  agent: AgentSide,
  job: {
    sources: readonly { path: string; kind: "file" | "dir"; mode: number; size: number }[];
    targets: readonly string[];
    trees: readonly Entry[][];
    tally: Tally;
  },
): Promise<void> {
  const { tally } = job;
  const token = randomHex(8);
  const made: { path: string; mode: number }[] = [];
  let n = 0;
  const temp = (dest: string) => `${dirName(dest)}/.qvm-cp-${token}-${n++}`;
  const place = async (guest: string, dest: string, entry: Omit<Entry, "rel">) => {
    tally.checkAborted();
    if (entry.kind === "dir") {
      if (await makeHostDir(dest)) made.push({ path: dest, mode: entry.mode });
    } else if (entry.kind === "file") {
      await fetchFile(agent, { guest, dest, mode: entry.mode, temp: temp(dest), tally });
      tally.files++;
    } else if (entry.kind === "symlink") {
      await placeHost(temp(dest), dest, (path) => Deno.symlink(entry.link, path));
      tally.symlinks++;
    } else {
      tally.skip(`${agent.vm}:${guest}`);
    }
  };
  try {
    for (const [i, source] of job.sources.entries()) {
      await place(source.path, job.targets[i], { ...source, link: "" });
      for (const entry of job.trees[i]) {
        await place(joinPath(source.path, entry.rel), joinPath(job.targets[i], entry.rel), entry);
      }
    }
  } finally {
    // Folders made get their modes last (deepest first): a read-only one was still filled.
    for (const dir of made.slice().reverse()) {
      await Deno.chmod(dir.path, dir.mode).catch(() => {});
    }
    tally.directories = made.length;
  }
}

/** Makes host folder `path` (0700 until the copy ends); false when a folder is there already. */
async function makeHostDir(path: string): Promise<boolean> {
  try {
    await Deno.mkdir(path, { mode: 0o700 });
    return true;
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    if ((await Deno.stat(path)).isDirectory) return false;
    throw new QvmError(`qvm cp: cannot overwrite non-directory '${path}' with a directory`);
  }
}

/**
 * Makes `temp` with `make`, then moves it to `dest` (a directory there is an error; anything
 * else is replaced). On failure `temp` is removed.
 */
async function placeHost(
  temp: string,
  dest: string,
  make: (path: string) => Promise<void>,
): Promise<void> {
  try {
    await make(temp);
    let there: Deno.FileInfo | undefined;
    try {
      there = await Deno.lstat(dest);
    } catch { /* nothing there */ }
    if (there?.isDirectory) {
      throw new QvmError(`qvm cp: cannot overwrite directory '${dest}' with non-directory`);
    }
    await Deno.rename(temp, dest);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

/** Streams guest file `guest` into host file `dest` (through `temp`), with `mode`. */
async function fetchFile(
  agent: AgentSide,
  job: { guest: string; dest: string; mode: number; temp: string; tally: Tally },
): Promise<void> {
  const { guest, tally } = job;
  await placeHost(job.temp, job.dest, async (path) => {
    using file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
    tally.moved(0, `${agent.vm}:${guest}`);
    const handle = await agentFileOpen(agent.socket, guest, "r");
    try {
      for (;;) {
        tally.checkAborted();
        const { data, eof } = await agentFileRead(agent.socket, handle, CHUNK);
        await writeFull(file, data);
        tally.moved(data.length, `${agent.vm}:${guest}`);
        if (eof || data.length === 0) break;
      }
    } finally {
      await agentFileClose(agent.socket, handle);
    }
    await Deno.chmod(path, job.mode);
  });
}
