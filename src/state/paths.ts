/**
 * Where qvm keeps things: the data dir (database, disks, logs) and the runtime dir (sockets, pids,
 * locks). Both are absolute paths, and both must be folders of the current user that no one else
 * can write: each is checked with lstat (a symlink is never followed) and refused otherwise.
 */
import { PermissionError, QvmError, UsageError } from "../errors.ts";

/** The resolved folders for one run of qvm (always absolute and normalized). */
export interface Dirs {
  dataDir: string;
  runtimeDir: string;
}

/** The database file inside a data dir. */
export function databasePath(dataDir: string): string {
  return join(dataDir, "qvm.db");
}

/** Where `ls --json` keeps its last output for the next run (see `StateStore.listJson`). */
export function listCachePath(dataDir: string): string {
  return join(dataDir, "ls-json.cache");
}

/**
 * Data dir: flag, else `$QVM_DATA_DIR`, else `$XDG_DATA_HOME/qvm`, else `~/.local/share/qvm`.
 * Runtime dir: flag, else `$QVM_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/qvm`, else `/tmp/qvm-<uid>`.
 * A relative flag or `QVM_*` value resolves against the current folder, once, here, so every path
 * qvm records (disks in the database) is absolute; relative `XDG_*` values are ignored, as the XDG
 * base directory spec says.
 */
export function resolveDirs(flags: { dataDir?: string; runtimeDir?: string }): Dirs {
  for (const [flag, value] of [["data-dir", flags.dataDir], ["runtime-dir", flags.runtimeDir]]) {
    if (value === "") throw new UsageError(`--${flag} must not be empty`);
  }
  const env = (name: string) => Deno.env.get(name) || undefined;
  const xdg = (name: string) => {
    const value = env(name);
    return value?.startsWith("/") ? join(value, "qvm") : undefined;
  };
  const home = env("HOME") ?? "/root";
  const dataDir = flags.dataDir ?? env("QVM_DATA_DIR") ?? xdg("XDG_DATA_HOME") ??
    join(home, ".local/share/qvm");
  const runtimeDir = flags.runtimeDir ?? env("QVM_RUNTIME_DIR") ?? xdg("XDG_RUNTIME_DIR") ??
    `/tmp/qvm-${Deno.uid()}`;
  return { dataDir: absolute(dataDir), runtimeDir: absolute(runtimeDir) };
}

// Small path helpers of our own: node:path costs start-up time on every command.

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? `${dir}${name}` : `${dir}/${name}`;
}

function dirname(path: string): string {
  return path.slice(0, Math.max(path.lastIndexOf("/"), 1));
}

/** `path` made absolute (against the current folder) and normalized: no `.`, `..` or extra `/`. */
function absolute(path: string): string {
  let full = path;
  if (!path.startsWith("/")) {
    try {
      full = `${Deno.cwd()}/${path}`;
    } catch (err) {
      throw new QvmError(`cannot resolve ${path}: the current folder is gone`, { cause: err });
    }
  }
  const parts: string[] = [];
  for (const part of full.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}

/**
 * Why a folder, as `lstat` saw it, is unsafe for qvm, or undefined when it is safe: it must be a
 * real folder (not a symlink), owned by the current user, not writable by group or others.
 */
export function unsafeDirReason(info: Deno.FileInfo, uid: number | null): string | undefined {
  if (info.isSymlink) return "is a symbolic link";
  if (!info.isDirectory) return "is not a folder";
  if (uid !== null && info.uid !== null && info.uid !== uid) {
    return `belongs to uid ${info.uid}, not to you (uid ${uid})`;
  }
  const mode = info.mode ?? 0;
  if ((mode & 0o022) !== 0) {
    const who = (mode & 0o022) === 0o022 ? "group and others" : mode & 0o020 ? "group" : "others";
    return `is writable by ${who} (mode 0${(mode & 0o777).toString(8).padStart(3, "0")})`;
  }
  return undefined;
}

/**
 * Checks `dir` with one lstat: true if it is a safe folder, false if it does not exist; throws a
 * PermissionError (exit 4) naming `label` if it is unsafe. Never follows a symlink.
 */
export function checkDir(dir: string, label = "folder"): boolean {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(dir);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new PermissionError(`cannot reach ${label} ${dir}: permission denied`);
    }
    if (err instanceof Deno.errors.NotADirectory) {
      throw new QvmError(`${label} ${dir} cannot exist: a folder above it is a file`);
    }
    throw err;
  }
  const reason = unsafeDirReason(info, Deno.uid());
  if (reason === undefined) return true;
  throw new PermissionError(
    `${label} ${dir} ${reason}; qvm refuses to use it (use a folder of your own, mode 0700)`,
  );
}

/** Refuses (exit 4) a data or runtime dir that exists and is not safe; missing ones are fine. */
export function refuseUnsafeDirs(dirs: Dirs): void {
  checkDir(dirs.dataDir, "data dir");
  checkDir(dirs.runtimeDir, "runtime dir");
}

/**
 * Creates `dir` (mode 0700) if missing and refuses (exit 4) an unsafe one. Only `dir` itself is
 * checked, unless `within` names the qvm folder it lies in: then every folder from `within` down
 * to `dir` is checked (or created) in turn, so a symlink planted on the way is never followed.
 */
export function ensurePrivateDir(dir: string, options: { within?: string } = {}): void {
  if (options.within === undefined) return ensureOne(dir);
  const root = absolute(options.within);
  const target = absolute(dir);
  const prefix = root.endsWith("/") ? root : `${root}/`;
  if (target !== root && !target.startsWith(prefix)) {
    throw new QvmError(`${dir} is not inside ${options.within}`);
  }
  let at = root;
  ensureOne(at);
  for (const step of target.slice(prefix.length).split("/").filter(Boolean)) {
    ensureOne(at = join(at, step));
  }
}

function ensureOne(dir: string): void {
  if (checkDir(dir)) return;
  try {
    // Parents that are missing too are created with mode 0700 and checked the same way.
    if (!exists(dirname(dir))) ensureOne(dirname(dir));
    Deno.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new PermissionError(`cannot create ${dir}: permission denied`);
    }
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      throw new QvmError(`cannot create ${dir}: ${(err as Error).message}`);
    }
    if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
  }
  if (!checkDir(dir)) throw new QvmError(`cannot create ${dir}: it vanished while being made`);
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
