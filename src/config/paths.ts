/**
 * Paths in configs: relative paths resolve against the config file's folder (top-level keys,
 * storage items, path-valued QEMU options and sub-options, raw `args`), the default place of a
 * disk, and the system folders where qvm never creates a disk.
 */

// Files are looked at with Deno's own calls and paths joined by ./_path.ts: importing node:fs
// and node:path costs every command that loads the config module (start among them) ~15 ms of
// start-up (node:fs alone: start --dry-run 48 -> 38 ms, paired).
import { dirname, isAbsolute, join, resolve } from "../path.ts";
import { stripDashes } from "./arguments.ts";
import { isMap } from "./_util.ts";
import { escapeOptionValue, splitOptionText } from "./qemu_opts.ts";
import { resolveCloudInitPaths } from "./cloud_init.ts";
import { resolveBackingPaths } from "./image.ts";
import type { DiskStorage } from "./types.ts";

/** Options whose whole value is a file or folder path (`-kernel ./vmlinuz`, `-cdrom ./x.iso`). */
export const PATH_OPTIONS: ReadonlySet<string> = new Set([
  "kernel",
  "initrd",
  "bios",
  "dtb",
  "pflash",
  "cdrom",
  "hda",
  "hdb",
  "hdc",
  "hdd",
  "fda",
  "fdb",
  "sd",
  "mtdblock",
  "option-rom",
  "L",
  "readconfig",
  "mem-path",
]);

/** Sub-option keys whose value is a path (`file=`, `path=`, ...); the last dotted part counts. */
export const PATH_KEYS: ReadonlySet<string> = new Set([
  "file",
  "filename",
  "path",
  "logfile",
  "script",
  "downscript",
  "romfile",
  "mem-path",
  "dir",
  "smb",
  "tftp",
  "cancel-path",
  "splash",
  "sock",
  "socket",
]);

/** Options whose value is not QEMU option text (a kernel command line, a snapshot tag, a URI). */
const NOT_OPTION_TEXT = new Set(["append", "loadvm", "incoming", "name", "uuid"]);

/** Keys that name a node, not a file, for one option (`-blockdev file=NODE,backing.file=NODE`). */
const NOT_PATHS: Record<string, ReadonlySet<string>> = {
  blockdev: new Set(["file", "backing"]),
};

/** `script=no` is "no script", not a file called `no`. */
const NOT_A_FILE: Record<string, ReadonlySet<string>> = {
  script: new Set(["no"]),
  downscript: new Set(["no"]),
};

/** A value that names a relative file: not empty, not absolute, not `proto:...` (nbd:, json:, ...). */
function isRelativePath(value: unknown): value is string {
  return typeof value === "string" && value !== "" && !isAbsolute(value) &&
    !/^[A-Za-z][A-Za-z0-9+.-]*:/.test(value);
}

function resolvedPath(dir: string, value: unknown): unknown {
  return isRelativePath(value) ? resolve(dir, value) : value;
}

function isPathKey(option: string, key: string): boolean {
  const last = key.split(".").at(-1) ?? key;
  return !NOT_PATHS[option]?.has(last) && PATH_KEYS.has(last);
}

function resolvedSub(dir: string, option: string, key: string, value: unknown): unknown {
  const last = key.split(".").at(-1) ?? key;
  if (typeof value === "string" && NOT_A_FILE[last]?.has(value)) return value;
  return isPathKey(option, key) ? resolvedPath(dir, value) : value;
}

/** Resolves the path-valued `key=value` parts of QEMU option text (`file=./d.qcow2,if=virtio`). */
function resolveOptionText(dir: string, option: string, text: string): string {
  return splitOptionText(text).map((part) => {
    const at = part.indexOf("=");
    if (at <= 0) return part;
    const key = part.slice(0, at);
    return `${key}=${resolvedSub(dir, option, key, part.slice(at + 1))}`;
  }).map(escapeOptionValue).join(",");
}

/** Resolves paths in a sub-option's value: maps by dotted key, lists element by element. */
function resolveSub(dir: string, option: string, key: string, value: unknown): unknown {
  if (Array.isArray(value)) return value.map((element) => resolveSub(dir, option, key, element));
  if (isMap(value)) {
    for (const [k, v] of Object.entries(value)) {
      value[k] = resolveSub(dir, option, key === "" ? k : `${key}.${k}`, v);
    }
    return value;
  }
  return key === "" ? value : resolvedSub(dir, option, key, value);
}

/**
 * Options that take a character device in short form (`file:PATH`, `unix:PATH,...`, `pipe:PATH`),
 * and `-vnc`, whose `unix:PATH` display is written the same way.
 */
const CHARDEV_OPTIONS = new Set([
  "serial",
  "parallel",
  "monitor",
  "qmp",
  "qmp-pretty",
  "debugcon",
  "gdb",
  "vnc",
]);

/** Resolves the path of a short-form character device (`-serial file:./log`); others stay. */
function resolveChardevSpec(dir: string, text: string): string {
  const match = /^(file|pipe|unix):(.+)$/s.exec(text);
  if (!match) return text;
  if (match[1] !== "unix") return `${match[1]}:${resolvedPath(dir, match[2])}`;
  const [path, ...rest] = splitOptionText(match[2]);
  return `unix:${[String(resolvedPath(dir, path)), ...rest].map(escapeOptionValue).join(",")}`;
}

/** Resolves an option's first value: a path option's path, else paths inside its option text. */
function resolveHead(dir: string, option: string, value: unknown): unknown {
  if (PATH_OPTIONS.has(option)) return resolvedPath(dir, value);
  if (NOT_OPTION_TEXT.has(option)) return value;
  if (CHARDEV_OPTIONS.has(option) && typeof value === "string") {
    return resolveChardevSpec(dir, value);
  }
  if (typeof value === "string") return resolveOptionText(dir, option, value);
  if (Array.isArray(value)) return value.map((element) => resolveHead(dir, option, element));
  return resolveSub(dir, option, "", value);
}

function resolveArguments(dir: string, items: unknown[]): void {
  for (const item of items) {
    if (!isMap(item)) continue;
    const [first, ...rest] = Object.keys(item);
    if (first === undefined) continue;
    const option = stripDashes(first);
    item[first] = resolveHead(dir, option, item[first]);
    for (const key of rest) item[key] = resolveSub(dir, option, key, item[key]);
  }
}

/** Raw `args`: the value after a path option, and path keys in the option text after any other. */
function resolveArgs(dir: string, args: unknown[]): void {
  for (let i = 0; i + 1 < args.length; i++) {
    const flag = args[i];
    const value = args[i + 1];
    if (typeof flag !== "string" || !flag.startsWith("-") || typeof value !== "string") continue;
    if (value.startsWith("-")) continue;
    args[i + 1] = resolveHead(dir, stripDashes(flag), value);
    i++;
  }
}

const STORAGE_PATH_KEYS = ["file", "path"];

/**
 * A storage item's paths: `file` and `path` against `dir`; `backing_file` against the folder of the
 * item's `file` when it has one (qemu-img's rule for a backing file, and maqet's: a disk and its
 * base move together), else against `dir`.
 */
function resolveStoragePaths(item: Record<string, unknown>, dir: string): void {
  const maps = [item, item.options].filter(isMap);
  for (const map of maps) {
    for (const key of STORAGE_PATH_KEYS) {
      if (key in map) map[key] = resolvedPath(dir, map[key]);
    }
  }
  const file = maps.map((map) => map.file).find((f) => typeof f === "string" && isAbsolute(f));
  const base = typeof file === "string" ? dirname(file) : dir;
  for (const map of maps) {
    if ("backing_file" in map) map.backing_file = resolvedPath(base, map.backing_file);
  }
}

/**
 * Resolves relative paths of one raw config in place against `dir` (the config file's folder):
 * `binary` (when it has a slash), storage `file`/`path` (also under `options:`), `backing_file`
 * (against its disk's folder, see `resolveStoragePaths`),
 * path options (`kernel`, `cdrom`, `hda`, ...), path-valued sub-options (`file=`, `path=`, ...)
 * in every spelling, and the same in raw `args`. Values that are not paths are left alone.
 */
export function resolveConfigPaths(config: Record<string, unknown>, dir: string): void {
  if (typeof config.binary === "string" && config.binary.includes("/")) {
    config.binary = resolvedPath(dir, config.binary);
  }
  if (Array.isArray(config.storage)) {
    for (const item of config.storage) {
      if (isMap(item)) resolveStoragePaths(item, dir);
    }
  }
  if (Array.isArray(config.arguments)) resolveArguments(dir, config.arguments);
  if (Array.isArray(config.args)) resolveArgs(dir, config.args);
  resolveCloudInitPaths(config, dir);
  resolveBackingPaths(config, dir);
}

/** The image file of a disk: its `file`, else `<diskDir>/<name>.<type>` under qvm's data dir. */
export function diskFile(disk: DiskStorage, diskDir: string): string {
  return disk.file ?? join(diskDir, `${disk.name}.${disk.type}`);
}

/** Host folders where qvm never creates a disk image (it would be created as whoever runs qvm). */
export const SYSTEM_FOLDERS: readonly string[] = [
  "/etc",
  "/usr",
  "/bin",
  "/sbin",
  "/lib",
  "/lib32",
  "/lib64",
  "/libx32",
  "/boot",
  "/proc",
  "/sys",
  "/dev",
];

/** Folders inside system folders that are meant for users' files (as in maqet): a RAM disk. */
const USER_FOLDERS_INSIDE: readonly string[] = ["/dev/shm"];

function within(path: string, folder: string): boolean {
  return path === folder || path.startsWith(`${folder}/`);
}

function under(path: string): string | undefined {
  if (USER_FOLDERS_INSIDE.some((folder) => within(path, folder))) return undefined;
  return SYSTEM_FOLDERS.find((folder) => within(path, folder));
}

/** The target of `path` when it is a symlink (absolute), else undefined. */
function linkTarget(path: string): string | undefined {
  try {
    return resolve(dirname(path), Deno.readLinkSync(path));
  } catch {
    return undefined;
  }
}

/**
 * The real path of `path`'s nearest existing ancestor joined with the rest (symlinks followed,
 * a dangling one too: a disk created at `./x.qcow2 -> /etc/x.qcow2` would land in /etc).
 */
function realish(path: string, hops = 0): string {
  let head = path;
  const tail: string[] = [];
  while (head !== dirname(head)) {
    try {
      return join(Deno.realPathSync(head), ...tail.reverse());
    } catch {
      const target = hops < 40 ? linkTarget(head) : undefined;
      if (target !== undefined) return join(realish(target, hops + 1), ...tail.reverse());
      tail.push(head.slice(dirname(head).length).replace(/^\//, ""));
      head = dirname(head);
    }
  }
  return path;
}

/**
 * The system folder (`/etc`, `/usr`, `/bin`, `/boot`, `/proc`, `/sys`, `/dev`, ...) that holds
 * `path`, directly or through a symlink, or undefined (also for `/dev/shm`, a RAM disk for users).
 */
export function systemFolderOf(path: string): string | undefined {
  const lexical = resolve(path);
  return under(lexical) ?? under(realish(lexical));
}

/** True when something (file, device, link) exists at `path`. */
export function pathExists(path: string): boolean {
  try {
    Deno.statSync(path); // follows links, as node's existsSync does: a dangling one is not there
    return true;
  } catch {
    return false;
  }
}
