/**
 * `ls --json` at the cost of what changed. Its output is a function of the database (every VM's
 * row) and of what the checks of the VMs that claim a process found, so it is kept in a file
 * under both: the database's token (which every change of a VM renews, in the same transaction,
 * whoever writes) and the observed statuses. A run checks every such VM as always, then prints
 * the kept bytes when the token and the statuses are the same, else builds the output (SQLite)
 * and keeps it. The file also keeps where each running VM's run state was read (the size of its
 * QEMU log then), so a log that has not grown is not read again, and which VMs had a freeze
 * marker in the runtime dir, listed again only when the folder changed since.
 *
 * A VM added, removed, renamed, started or stopped changes the token; one killed is found by its
 * check and recorded (which changes the token too); one paused or resumed from outside changes
 * its log and so its observed status. A store that keeps corrections in memory (a database that
 * cannot be written) never uses the file.
 *
 * `listVms` is the listing for the other forms (a table, `--status`, `--format`): every VM's
 * observation, with a live one's uptime and forwards in effect.
 */
import { listCachePath, observedParam, type ObservedRow, SQL, type VmBrief } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { QvmError } from "../errors.ts";
import {
  type BriefObservation,
  glance,
  isLive,
  needsCheck,
  observeAll,
  type ObservedStatus,
  type RunMark,
} from "./observe.ts";
import {
  cloudPaths,
  type ForwardRecord,
  frozenIds,
  readForwards,
  runtimeNames,
} from "../vm_files.ts";
import { readProcStat } from "../qemu/process.ts";

/** The first line of the file, with the form of the output (see `form`). */
const MAGIC = "qvm ls --json 2";

/**
 * A listing of the runtime dir older than this (by its folder's mtime) is kept: a file made or
 * removed there since changes the folder's mtime and ctime, later than the listing by then.
 */
const SETTLED_MS = 2000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the file keeps: the key of the output, the marks of the next glances, the output. */
interface Kept {
  token: string;
  /** `observedParam` of the statuses the output shows, `{}` for none. */
  observed: string;
  marks: Record<string, RunMark>;
  /** The VMs with a freeze marker, and the runtime dir's stamp when it was listed ("": never). */
  frozen: { stamp: string; ids: string[] };
  output: Output;
}

/**
 * An output as it is read: its first bytes (read with the file's head), then `rest` more bytes
 * still in `file`, open at them, or none. Kept output goes from the file to stdout in pieces:
 * 10,000 VMs are ~1.2 MB, and one buffer of it cost ~2 ms more than pieces of 256 KiB, in page
 * faults and copies.
 */
export interface Output {
  head: Uint8Array;
  file?: Deno.FsFile;
  rest: number;
}

/** What a read of the file asks for first; the pieces the rest of the output goes out in. */
const PIECE = 256 * 1024;

/** Where `ls --json`'s output goes: each piece in order, written before the next is read. */
export type Sink = (bytes: Uint8Array) => void;

let formLine: string | undefined;

/**
 * The form of the output: the SQL that builds it (a hash) and the Deno, so the SQLite, that ran
 * it; output kept by another build of qvm is never printed.
 */
function form(): string {
  if (formLine === undefined) {
    let hash = 0x811c9dc5; // FNV-1a
    for (const char of SQL.allJson + SQL.allJsonObserved) {
      hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193) >>> 0;
    }
    formLine = `${MAGIC} ${hash.toString(16)} deno-${Deno.version.deno}`;
  }
  return formLine;
}

/**
 * The file's head and its output (see `Output`; the file stays open while output is unread: close
 * it with `closeOutput`), or undefined when it is missing, of another form, or not whole: lines
 * `form`, token, observed, marks, frozen, the output's length; then the output.
 */
function readKept(path: string, expectedForm: string): Kept | undefined {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path);
  } catch {
    return undefined;
  }
  try {
    const kept = readHead(file, expectedForm);
    if (kept !== undefined) return kept;
  } catch { /* unreadable: built again */ }
  file.close();
  return undefined;
}

function readHead(file: Deno.FsFile, expectedForm: string): Kept | undefined {
  const size = file.statSync().size;
  // The head is a few lines; the marks of many running VMs can make it longer than a piece.
  let bytes = new Uint8Array(Math.min(size, PIECE));
  let read = 0;
  let end: number;
  while ((end = headEnd(bytes, read)) === -1) {
    if (read === size) return undefined;
    if (read === bytes.length) {
      const more = new Uint8Array(Math.min(size, bytes.length * 2));
      more.set(bytes);
      bytes = more;
    }
    const n = file.readSync(bytes.subarray(read));
    if (n === null) return undefined;
    read += n;
  }
  const lines = decoder.decode(bytes.subarray(0, end)).split("\n");
  const [head, token, observed, marks, frozen, length] = lines;
  if (head !== expectedForm || Number(length) !== size - end - 1) return undefined;
  const output = { head: bytes.subarray(end + 1, read), file, rest: size - read };
  return { token, observed, marks: JSON.parse(marks), frozen: JSON.parse(frozen), output };
}

/** Where the head's last line ends in the first `read` bytes (its 6th newline), or -1. */
function headEnd(bytes: Uint8Array, read: number): number {
  let at = -1;
  for (let line = 0; line < 6; line++) {
    at = bytes.indexOf(10, at + 1);
    if (at === -1 || at >= read) return -1;
  }
  return at;
}

/** Writes `output` to `sink`, in pieces, and closes its file. */
export function writeOutput(output: Output, sink: Sink): void {
  try {
    if (output.head.length > 0) sink(output.head);
    let rest = output.rest;
    const piece = new Uint8Array(Math.min(rest, PIECE));
    while (rest > 0) {
      const n = output.file!.readSync(piece.subarray(0, Math.min(rest, piece.length)));
      if (n === null) throw new QvmError("the kept ls --json output ended early: run it again");
      sink(piece.subarray(0, n));
      rest -= n;
    }
  } finally {
    closeOutput(output);
  }
}

/** `output` whole, in one buffer (its file closed). */
function wholeOutput(output: Output): Uint8Array {
  if (output.rest === 0) {
    closeOutput(output);
    return output.head;
  }
  const bytes = new Uint8Array(output.head.length + output.rest);
  let at = 0;
  writeOutput(output, (piece) => {
    bytes.set(piece, at);
    at += piece.length;
  });
  return bytes;
}

function closeOutput(output: Output): void {
  try {
    output.file?.close();
  } catch { /* closed */ }
  output.file = undefined;
}

/**
 * Writes `kept` to `path` through a temp file renamed into place, so a reader sees a whole file,
 * old or new. Best effort: a data dir that cannot be written keeps nothing.
 */
function writeKept(
  path: string,
  headForm: string,
  kept: Omit<Kept, "output">,
  output: Uint8Array,
): void {
  const head = encoder.encode(
    [
      headForm,
      kept.token,
      kept.observed,
      JSON.stringify(kept.marks),
      JSON.stringify(kept.frozen),
      output.length,
      "",
    ].join("\n"),
  );
  const bytes = new Uint8Array(head.length + output.length);
  bytes.set(head);
  bytes.set(output, head.length);
  const temp = `${path}.${Deno.pid}.tmp`;
  try {
    Deno.writeFileSync(temp, bytes, { mode: 0o600 });
    Deno.renameSync(temp, path);
  } catch {
    try {
      Deno.removeSync(temp);
    } catch { /* never written */ }
  }
}

function shown(o: BriefObservation): ObservedRow {
  const live = isLive(o.status);
  return {
    status: o.status,
    pid: live ? o.vm.pid : null,
    stop_reason: live ? null : o.vm.stopReason,
  };
}

/**
 * The VMs with a freeze marker in the runtime dir: `kept`'s, while the folder's stamp (mtime,
 * ctime, inode) is the one it was listed at, else a new listing. A listing is kept only when the
 * folder had not changed for `SETTLED_MS` (a change in the same tick as the listing could leave
 * its stamp as it was).
 */
function frozenNow(
  env: VmEnv,
  kept: Kept["frozen"] | undefined,
): Kept["frozen"] {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(env.dirs.runtimeDir);
  } catch {
    return { stamp: "", ids: [] }; // no runtime dir: nothing runs, nothing is frozen
  }
  const mtime = info.mtime?.getTime() ?? 0;
  const stamp = `${mtime} ${info.ctime?.getTime() ?? 0} ${info.ino ?? 0}`;
  if (kept && kept.stamp !== "" && kept.stamp === stamp) return kept;
  const ids = frozenIds(runtimeNames(env.dirs));
  return { stamp: mtime > 0 && Date.now() - mtime > SETTLED_MS ? stamp : "", ids };
}

function sameMarks(a: Record<string, RunMark>, b: Record<string, RunMark>): boolean {
  const keys = Object.keys(b);
  if (Object.keys(a).length !== keys.length) return false;
  return keys.every((id) =>
    a[id]?.start === b[id].start && a[id].size === b[id].size && a[id].state === b[id].state
  );
}

/**
 * Every VM as `ls --json` prints it (see `StateStore.listJson`), the VMs that claim a process
 * checked first (and any change recorded), the output kept for the next run. Undefined when a
 * value SQLite's JSON cannot hold is in the database (a BLOB written there by hand): `listVms`
 * then lists it as the other commands would.
 */
export async function listJson(env: VmEnv): Promise<Output | undefined> {
  try {
    return await keptListJson(env, (rest) => observeAll(env, rest, { fromLog: true }));
  } catch (err) {
    if (err instanceof QvmError) throw err;
    return undefined;
  }
}

/**
 * `listJson`'s output when a glance settles every VM that claims a process (the quick route of
 * `ls --json`, see `src/cli/quick.ts`): undefined when one needs a full look (which may record a
 * change), or on any failure, for `listJson` to handle.
 */
export async function quickListJson(env: VmEnv): Promise<Output | undefined> {
  try {
    return await keptListJson(env, () => undefined);
  } catch {
    return undefined;
  }
}

/**
 * The output, kept or built (write it with `writeOutput`). `look` observes the VMs a glance did
 * not settle, or returns undefined to give up (then so does this).
 */
async function keptListJson(
  env: VmEnv,
  look: (vms: VmBrief[]) => Promise<BriefObservation[]> | undefined,
): Promise<Output | undefined> {
  const useFile = env.store.cannotWrite === undefined;
  const path = listCachePath(env.dirs.dataDir);
  const headForm = form();
  const kept = useFile ? readKept(path, headForm) : undefined;
  let handedOver = false; // the kept output goes to the caller, who writes and closes it
  try {
    const live = env.store.listLive();
    const frozenList = live.length > 0 ? frozenNow(env, kept?.frozen) : { stamp: "", ids: [] };
    const frozen = new Set(frozenList.ids);
    const observed = new Map<string, ObservedRow>();
    const marks: Record<string, RunMark> = {};
    const rest: VmBrief[] = [];
    for (const vm of live) {
      const quick = glance(env, vm, { frozen, previous: kept?.marks[vm.id], measure: useFile });
      if (quick) {
        observed.set(vm.id, shown(quick.seen));
        if (quick.mark) marks[vm.id] = quick.mark;
      } else {
        observed.set(vm.id, { status: vm.status, pid: null, stop_reason: null }); // its place
        rest.push(vm);
      }
    }
    if (rest.length > 0) {
      const looked = look(rest);
      if (looked === undefined) return undefined;
      for (const o of await looked) observed.set(o.vm.id, shown(o));
    }
    const param = observedParam(observed);
    if (!useFile) return { head: env.store.listJson(observed), rest: 0 };
    if (kept && kept.observed === (param ?? "{}") && kept.token === env.store.token()) {
      if (!sameMarks(kept.marks, marks) || kept.frozen.stamp !== frozenList.stamp) {
        const output = wholeOutput(kept.output);
        writeKept(path, headForm, { ...kept, marks, frozen: frozenList }, output);
        return { head: output, rest: 0 };
      }
      handedOver = true;
      return kept.output;
    }
    const { token, json } = env.store.snapshotJson(param);
    writeKept(path, headForm, { token, observed: param ?? "{}", marks, frozen: frozenList }, json);
    return { head: json, rest: 0 };
  } finally {
    if (kept && !handedOver) closeOutput(kept.output);
  }
}

/** Linux counts process start times in USER_HZ ticks, 100 a second on every architecture qvm runs on. */
const TICKS_PER_SECOND = 100;

/** Seconds since the system started (/proc/uptime), or NaN where it cannot be read. */
function systemUptime(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
  } catch {
    return NaN;
  }
}

/**
 * Seconds since process `pid` started (from /proc), or undefined if it is gone. `start` is its
 * start time when known (what a listing's check just read), and `systemUp` the system's uptime,
 * read once for many.
 */
export function processUptime(
  pid: number,
  known: { start?: number | null; systemUp?: number } = {},
): number | undefined {
  const startTicks = known.start ?? readProcStat(pid)?.start;
  if (startTicks === undefined) return undefined;
  const up = (known.systemUp ?? systemUptime()) - startTicks / TICKS_PER_SECOND;
  return Number.isFinite(up) ? up : undefined;
}

/** A VM as `ls` lists it. */
export interface ListedVm {
  vm: VmBrief;
  status: ObservedStatus;
  /** Its QEMU's pid while it is live, else null. */
  pid: number | null;
  /** How it last ended, while it is not live. */
  stopReason: string | null;
  /** Seconds since its QEMU started, for a live VM when known. */
  uptime?: number;
  /** The forwards in effect of a live VM (recorded at start); none when it has no record. */
  forwards: ForwardRecord[];
}

/**
 * Every VM (only those with status `status`, when given) with its real status, checked as
 * `observeAll` does from QEMU's log; a live VM with its uptime and forwards in effect. With
 * `namesOnly` and no `status`, nothing is checked: the rows as stored, for names alone.
 */
export async function listVms(
  env: VmEnv,
  options: { status?: string; namesOnly?: boolean } = {},
): Promise<ListedVm[]> {
  const all = env.store.listBrief();
  if (options.namesOnly && options.status === undefined) {
    return all.map((vm) => ({ vm, status: vm.status, pid: null, stopReason: null, forwards: [] }));
  }
  // One listing of the runtime dir, for freeze markers and forwards records alike.
  const names = all.some(needsCheck) ? runtimeNames(env.dirs) : new Set<string>();
  const seen = await observeAll(env, all, { fromLog: true, names });
  const shown = options.status === undefined
    ? seen
    : seen.filter((o) => o.status === options.status);
  const systemUp = shown.some((o) => isLive(o.status)) ? systemUptime() : NaN;
  return shown.map((o) => listed(env, o, { names, systemUp }));
}

function listed(
  env: VmEnv,
  o: BriefObservation,
  around: { names: ReadonlySet<string>; systemUp: number },
): ListedVm {
  const live = isLive(o.status);
  const pid = live ? o.vm.pid : null;
  const uptime = pid === null
    ? undefined
    : processUptime(pid, { start: o.started, systemUp: around.systemUp });
  // Read only when the runtime dir's listing has the record (most VMs have none).
  const file = cloudPaths(env.dirs, o.vm.id).forwardsFile;
  const there = pid !== null && around.names.has(file.slice(file.lastIndexOf("/") + 1));
  return {
    vm: o.vm,
    status: o.status,
    pid,
    stopReason: live ? null : o.vm.stopReason,
    uptime,
    forwards: (there ? readForwards(file) : undefined) ?? [],
  };
}
