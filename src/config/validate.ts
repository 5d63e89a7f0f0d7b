/**
 * Validating a raw (merged) config into a `VmConfig`: checks every type and value, fills defaults
 * and normalizes sizes. Every error is one UsageError line naming the offending key and value.
 */

import { isAbsolute } from "../path.ts";
import { didYouMean, UsageError } from "../errors.ts";
import { checkCommandKeys, checkSingletons, settleShorthands } from "./_checks.ts";
import { isMap, kindOf, show } from "./_util.ts";
import { argumentOption, bareFlag, FLAG_OPTIONS, stripDashes } from "./arguments.ts";
import { storageNameProblem, validateName } from "./name.ts";
import { cloudSectionsOf } from "./cloud_sections.ts";
import { readableFile } from "./image.ts";
import type { PortHolder } from "./network.ts";
import { pathExists, systemFolderOf } from "./paths.ts";
import type {
  ArgumentItem,
  ArgValue,
  DiskInterface,
  DiskStorage,
  StorageItem,
  VirtfsStorage,
  VmConfig,
} from "./types.ts";

/** Options of `validateConfig`; `warn` receives non-fatal findings such as unknown keys. */
export interface ValidateOptions {
  /** Called once per non-fatal finding, with a one-line message. */
  warn?: (message: string) => void;
  /** Names the VM holding a fixed host port that is taken, for the error's message. */
  portHolder?: PortHolder;
}

/**
 * Every top-level key a config may have, written once: other folders read it as `CONFIG_KEYS`
 * (libvirt's export decides for each whether its XML carries it).
 */
export const CONFIG_KEYS = [
  "name",
  "binary",
  "memory",
  "cpu",
  "display",
  "vga",
  "args",
  "arguments",
  "storage",
  "image",
  "image_format",
  "disk_size",
  "allowed_backing_files",
  "network",
  "cloud_init",
  "guest_agent",
] as const;
/** A top-level config key. */
export type ConfigKey = typeof CONFIG_KEYS[number];
const KNOWN_KEYS: ReadonlySet<string> = new Set(CONFIG_KEYS);
/** The keys of a disk storage item besides `options:` (its extra `-drive` sub-options). */
export const DISK_ITEM_KEYS = [
  "name",
  "type",
  "file",
  "size",
  "interface",
  "backing_file",
  "backing_format",
  "media",
] as const;
const DISK_KEYS: ReadonlySet<string> = new Set(DISK_ITEM_KEYS);
/** The keys of a 9p share storage item besides `options:` (its extra `-virtfs` sub-options). */
export const VIRTFS_ITEM_KEYS = [
  "name",
  "type",
  "path",
  "mount_tag",
  "security_model",
  "readonly",
] as const;
const VIRTFS_KEYS: ReadonlySet<string> = new Set(VIRTFS_ITEM_KEYS);
/** Sub-options qvm writes itself on a disk's `-drive` / a share's `-virtfs`; `options:` can't set them. */
const MANAGED_DRIVE_KEYS = new Set(["format", "if", "id"]);
const MANAGED_VIRTFS_KEYS = new Set(["local", "fsdriver"]);
const INTERFACES: readonly DiskInterface[] = ["virtio", "sata", "ide", "scsi", "none"];
const SECURITY_MODELS: readonly VirtfsStorage["security_model"][] = [
  "passthrough",
  "mapped-xattr",
  "mapped-file",
  "none",
];
/** Options that would take a VM out of qvm's hands (it must find and identify its QEMU). */
const MANAGED_OPTIONS = new Set(["daemonize", "pidfile", "uuid"]);
const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const AHCI_PORTS = 6;

function given(value: unknown): boolean {
  return value !== undefined && value !== null;
}

/** Normalizes `512m` → `512M`; a bare number gets `bareUnit`. Undefined when not a positive size. */
function parseSize(value: unknown, bareUnit: string): string | undefined {
  let text: string;
  if (typeof value === "number" && Number.isSafeInteger(value)) text = String(value);
  else if (typeof value === "string") text = value;
  else return undefined;
  const match = /^(\d+)([KMGT])?$/i.exec(text);
  if (!match) return undefined;
  const digits = match[1].replace(/^0+/, "");
  if (digits === "") return undefined;
  return digits + (match[2]?.toUpperCase() ?? bareUnit);
}

/** A non-empty string; `where` (e.g. " for storage 'hdd'") follows the value in messages. */
function text(key: string, value: unknown, where = ""): string {
  if (value === "") throw new UsageError(`invalid ${key} ''${where}: cannot be empty`);
  if (typeof value !== "string") {
    throw new UsageError(
      `invalid ${key} ${show(value)}${where}: expected a string, got ${kindOf(value)}`,
    );
  }
  return value;
}

/** `1.5G` → `1536M`: a fraction QEMU's `-m` takes, as a whole number of the largest unit that fits. */
function wholeSize(value: unknown): unknown {
  const match = typeof value === "string" ? /^(\d+)\.(\d+)([KMGT])$/i.exec(value) : null;
  if (!match) return value;
  const units = "KMGT";
  const scale = 10n ** BigInt(match[2].length);
  const kib = BigInt(match[1] + match[2]) * 1024n ** BigInt(units.indexOf(match[3].toUpperCase()));
  if (kib % scale !== 0n) return value;
  let n = kib / scale;
  let unit = 0;
  while (unit < units.indexOf(match[3].toUpperCase()) && n % 1024n === 0n) {
    n /= 1024n;
    unit++;
  }
  return `${n}${units[unit]}`;
}

/** Bytes in a size as `parseSize` gives it (`16M`, `512`): binary units, as QEMU reads them. */
export function sizeBytes(size: string): bigint {
  const match = /^(\d+)([KMGT])?$/.exec(size);
  if (!match) throw new RangeError(`not a size: ${size}`);
  const power = match[2] === undefined ? 0 : "KMGT".indexOf(match[2]) + 1;
  return BigInt(match[1]) * 1024n ** BigInt(power);
}

/** The most guest memory qvm accepts: far beyond any host, and what QEMU's x86 machines address. */
export const MAX_MEMORY = "16T";

function memoryOf(value: unknown): string {
  const size = parseSize(wholeSize(value), "M");
  if (size === undefined) {
    throw new UsageError(`invalid memory ${show(value)}: use a size like 512M or 2G`);
  }
  if (sizeBytes(size) > sizeBytes(MAX_MEMORY)) {
    throw new UsageError(
      `invalid memory ${show(value)}: more than ${MAX_MEMORY}, which no host can give a guest`,
    );
  }
  return size;
}

/** The keys of QEMU's `-smp` option text (`4,sockets=1,cores=2,threads=2`). */
const SMP_KEYS = new Set([
  "cpus",
  "maxcpus",
  "sockets",
  "dies",
  "clusters",
  "cores",
  "threads",
  "books",
  "drawers",
]);

/** True for `-smp` option text: an optional CPU count, then `key=N` parts of known keys. */
function isSmpText(text: string): boolean {
  const parts = text.split(",");
  if (/^\d+$/.test(parts[0])) parts.shift();
  return parts.every((part) => {
    const [key, value, extra] = part.split("=");
    return extra === undefined && SMP_KEYS.has(key) && /^\d+$/.test(value ?? "");
  });
}

/** `cpu:` is `-smp`: a count from 1 to 1024, or `-smp` text (as maqet, which passes it on as is). */
function cpuOf(value: unknown): number | string {
  const n = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 1024) return n;
  if (typeof value === "string" && /[=,]/.test(value) && isSmpText(value)) return value;
  throw new UsageError(
    `invalid cpu ${show(value)}: use a whole number from 1 to 1024, or -smp text such as ` +
      "'4,sockets=1,cores=2,threads=2'",
  );
}

function argsOf(value: unknown, warn: (message: string) => void): string[] {
  if (!Array.isArray(value)) {
    throw new UsageError(
      `invalid args ${show(value)}: expected a list of strings, got ${kindOf(value)}`,
    );
  }
  return value.map((arg, i) => {
    if (typeof arg === "string") {
      if (MANAGED_OPTIONS.has(arg.replace(/^--?/, "")) && arg.startsWith("-")) {
        throw new UsageError(`invalid args[${i}] ${show(arg)}: this option is managed by qvm`);
      }
      if (/^--?nographic$/.test(arg)) warn(NOGRAPHIC);
      if (arg.startsWith("-")) checkTerminal(arg, value[i + 1], warn);
      return arg;
    }
    if (typeof arg === "number" && Number.isFinite(arg)) return String(arg);
    throw new UsageError(`invalid args[${i}] ${show(arg)}: expected a string, got ${kindOf(arg)}`);
  });
}

function checkKey(where: string, key: string): void {
  const bare = key.replace(/^--?/, "");
  if (!KEY_PATTERN.test(bare)) {
    throw new UsageError(
      `invalid key ${show(key)} in ${where}: use letters, digits, '.', '_' and '-'`,
    );
  }
}

/** Checks a value inside an `arguments` map; a list inside a list is flattened when written. */
function argValueOf(where: string, value: unknown): ArgValue {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (Number.isFinite(value)) return value;
    throw new UsageError(`invalid value ${show(value)} in ${where}: not a finite number`);
  }
  if (Array.isArray(value)) {
    return value.map((element) => {
      if (element === null) {
        throw new UsageError(`invalid value ${show(value)} in ${where}: a list item is empty`);
      }
      return argValueOf(where, element);
    });
  }
  if (isMap(value)) {
    const out: { [key: string]: ArgValue } = {};
    for (const [key, inner] of Object.entries(value)) {
      checkKey(where, key);
      out[key] = argValueOf(where, inner);
    }
    return out;
  }
  throw new UsageError(`invalid value ${show(value)} in ${where}: unsupported ${kindOf(value)}`);
}

function argumentOf(item: unknown, i: number): ArgumentItem {
  const where = `arguments[${i}]`;
  let checked: ArgumentItem;
  if (typeof item === "string") {
    if (/\s/.test(item)) {
      throw new UsageError(
        `invalid ${where} ${show(item)}: a string item is a flag; write a map like {m: 2G} ` +
          "for an option with a value",
      );
    }
    if (item.replace(/^--?/, "") === "") throw new UsageError(`invalid ${where}: an empty flag`);
    checkKey(where, item);
    checked = item;
  } else if (isMap(item)) {
    if (Object.keys(item).length === 0) {
      throw new UsageError(`invalid ${where}: an empty map (its first key is the option)`);
    }
    checked = argValueOf(where, item) as { [key: string]: ArgValue };
  } else {
    throw new UsageError(
      `invalid ${where} ${show(item)}: expected a string or a map, got ${kindOf(item)}`,
    );
  }
  const option = argumentOption(checked);
  if (MANAGED_OPTIONS.has(option)) {
    throw new UsageError(
      `invalid ${where}: option '${option}' is managed by qvm and cannot be set`,
    );
  }
  if (option === "m" && isMap(checked)) {
    const value = Object.values(checked)[0];
    if (parseSize(wholeSize(value), "M") !== undefined) memoryOf(value); // the same bound
  }
  const key = CONFIG_KEY_NOT_OPTION[option];
  if (key !== undefined) {
    throw new UsageError(
      `invalid ${where}: '${option}' is a config key, not a QEMU option (QEMU has no ` +
        `-${option}); ${key}`,
    );
  }
  return checked;
}

/** Config keys that QEMU has no option for: written in `arguments`, QEMU would refuse them. */
const CONFIG_KEY_NOT_OPTION: Record<string, string> = {
  binary: "write 'binary: PATH' at the top of the config",
  memory: "write 'memory: 2G' at the top of the config, or {m: 2G}",
  storage: "write 'storage:' at the top of the config",
};

const NOGRAPHIC = "nographic: qvm runs QEMU detached, where -nographic is refused; the VM runs " +
  "headless (-display none) with its serial console on 'qvm console'";

/**
 * QEMU's own terminal cannot be used under qvm, which runs QEMU detached (`-daemonize`): a stdio
 * serial port or monitor is left out with a warning (the serial console is `qvm console`), a stdio
 * chardev or the curses display is refused.
 */
function checkTerminal(option: string, value: unknown, warn: (message: string) => void): void {
  const name = option.replace(/^--?/, "");
  if ((name === "serial" || name === "monitor") && (value === "stdio" || value === "mon:stdio")) {
    warn(
      `${name} ${value}: qvm runs QEMU detached, where stdio is refused; it is left out ` +
        (name === "serial"
          ? "and the serial console is on 'qvm console'"
          : "(QEMU's monitor: 'qvm qmp run VM human-monitor-command')"),
    );
  }
  const head = typeof value === "string"
    ? value.split(",")[0]
    : isMap(value)
    ? Object.keys(value)[0]
    : value;
  if ((name === "chardev" && head === "stdio") || (name === "display" && head === "curses")) {
    throw new UsageError(
      `${name} ${head} cannot be used: qvm runs QEMU detached (-daemonize), where QEMU refuses ` +
        "it; the serial console is on 'qvm console'",
    );
  }
}

/**
 * `{flag: true}` (or on/yes) of an option that takes no value is the bare flag, as written
 * `-flag`; `{flag: false}` (or off/no) leaves it out (null). Any other item is returned as it is.
 */
function flagItem(item: ArgumentItem, where: string): ArgumentItem | null {
  if (typeof item === "string" || bareFlag(item) !== undefined) return item;
  const keys = Object.keys(item);
  const option = stripDashes(keys[0]);
  if (keys.length !== 1 || !FLAG_OPTIONS.has(option)) return item;
  const value = item[keys[0]];
  const word = typeof value === "string" ? value.toLowerCase() : value;
  if (word === true || word === "on" || word === "yes" || word === "true") return option;
  if (word === false || word === "off" || word === "no" || word === "false") return null;
  throw new UsageError(
    `invalid ${where} ${show(item)}: -${option} takes no value; write '${option}' or ` +
      `{${option}: true}`,
  );
}

/** Checks the items; a bare flag given again (`enable-kvm` in two files) is kept once. */
function argumentsOf(value: unknown, warn: (message: string) => void): ArgumentItem[] {
  if (!Array.isArray(value)) {
    throw new UsageError(`invalid arguments ${show(value)}: expected a list, got ${kindOf(value)}`);
  }
  const flags = new Set<string>();
  const items: ArgumentItem[] = [];
  for (const [i, raw] of value.entries()) {
    if (raw === null || (isMap(raw) && Object.keys(raw).length === 0)) {
      // maqet skips an empty item (`-` or `- {}`); so does qvm, saying so.
      warn(`arguments[${i}] is empty (ignored)`);
      continue;
    }
    const item = flagItem(argumentOf(raw, i), `arguments[${i}]`);
    if (item === null) {
      warn(`arguments[${i}] ${show(raw)} turns a flag off: it is left out`);
      continue;
    }
    const flag = bareFlag(item);
    if (flag !== undefined && flags.has(flag)) continue;
    if (flag !== undefined) flags.add(flag);
    if (argumentOption(item) === "nographic") warn(NOGRAPHIC);
    if (typeof item !== "string") {
      const first = Object.keys(item)[0];
      checkTerminal(first, item[first], warn);
    }
    items.push(item);
  }
  return items;
}

function choice<T extends string>(
  value: unknown,
  choices: readonly T[],
  message: (shown: string) => string,
): T {
  const lower = typeof value === "string" ? value.toLowerCase() : value;
  if (typeof lower === "string" && (choices as readonly string[]).includes(lower)) {
    return lower as T;
  }
  throw new UsageError(message(show(value)));
}

function absolutePath(key: string, value: unknown, where: string): string {
  const path = text(key, value, where);
  if (!isAbsolute(path)) {
    throw new UsageError(`invalid ${key} ${show(path)}${where}: must be an absolute path`);
  }
  return path;
}

/** `readonly` and friends: true/false, or the YAML 1.1 words maqet's parser read as booleans. */
function flagOf(key: string, value: unknown, where: string): boolean {
  if (typeof value === "boolean") return value;
  if (value === 1 || value === 0) return value === 1; // maqet tests the value's truth
  const word = typeof value === "string" ? value.toLowerCase() : undefined;
  if (word === "yes" || word === "on" || word === "true") return true;
  if (word === "no" || word === "off" || word === "false") return false;
  throw new UsageError(`invalid ${key} ${show(value)}${where}: use true or false`);
}

/** Extra `-drive`/`-virtfs` sub-options from a storage item's `options:` map, as text. */
function extraOf(key: string, value: unknown, where: string): string {
  if (typeof value === "boolean") return value ? "on" : "off";
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  if (typeof value === "string") return value;
  throw new UsageError(
    `invalid options.${key} ${show(value)}${where}: expected a string, number or true/false`,
  );
}

/**
 * maqet's `options:` form of a storage item: known keys (`mount_tag`, `size`, ...) are read as if
 * written at the top level (both places with different values is an error); any other key is an
 * extra sub-option of the item's `-drive` or `-virtfs`.
 */
function liftOptions(
  item: Record<string, unknown>,
  known: ReadonlySet<string>,
  managed: ReadonlySet<string>,
  where: string,
): { item: Record<string, unknown>; extras: Record<string, string> } {
  const extras: Record<string, string> = {};
  if (!given(item.options)) return { item, extras };
  if (!isMap(item.options)) {
    throw new UsageError(
      `invalid options ${show(item.options)}${where}: expected a map, got ${kindOf(item.options)}`,
    );
  }
  const lifted: Record<string, unknown> = { ...item };
  delete lifted.options;
  for (const [key, value] of Object.entries(item.options)) {
    if (!given(value)) continue;
    if (known.has(key) && key !== "name" && key !== "type") {
      if (given(item[key]) && item[key] !== value) {
        throw new UsageError(
          `invalid storage${where.replace(" for storage", "")}: ${key} is given twice, ` +
            `as ${show(item[key])} and as options.${key} ${show(value)}`,
        );
      }
      lifted[key] = value;
    } else if (managed.has(key) || known.has(key)) {
      throw new UsageError(`invalid options.${key}${where}: qvm sets '${key}' itself`);
    } else {
      if (!KEY_PATTERN.test(key)) {
        throw new UsageError(
          `invalid key ${show(key)} in options${where}: use letters, digits, '.', '_' and '-'`,
        );
      }
      extras[key] = extraOf(key, value, where);
    }
  }
  return { item: lifted, extras };
}

function diskOf(raw: Record<string, unknown>, name: string, type: "qcow2" | "raw"): DiskStorage {
  const where = ` for storage '${name}'`;
  const { item, extras } = liftOptions(raw, DISK_KEYS, MANAGED_DRIVE_KEYS, where);
  // maqet: an overlay of a backing file without a size takes the backing file's size.
  const size = given(item.size)
    ? parseSize(item.size, "")
    : given(item.backing_file)
    ? undefined
    : "10G";
  if (given(item.size) && size === undefined) {
    throw new UsageError(
      `invalid size ${show(item.size)}${where}: use a size like 10G or 512M`,
    );
  }
  const iface = given(item.interface)
    ? choice(
      item.interface,
      INTERFACES,
      (shown) => `unknown interface ${shown}${where} (expected virtio, sata, ide, scsi or none)`,
    )
    : "virtio";
  const file = given(item.file) ? absolutePath("file", item.file, where) : undefined;
  if (file !== undefined) {
    const folder = systemFolderOf(file);
    if (folder !== undefined && !pathExists(file)) {
      throw new UsageError(
        `refusing to create disk '${name}' at ${show(file)}: ${folder} is a system folder ` +
          "(an image that already exists there may be used; new disks go elsewhere)",
      );
    }
  }
  const backing = given(item.backing_file)
    // It must be there when the disk is defined, as maqet checks, not only at its first start.
    ? readableFile("backing_file", absolutePath("backing_file", item.backing_file, where), where)
    : undefined;
  const media = given(item.media)
    ? choice(
      item.media,
      ["disk", "cdrom"],
      (shown) => `unknown media ${shown}${where} (expected disk or cdrom)`,
    )
    : "disk";
  const format = given(item.backing_format)
    ? text("backing_format", item.backing_format, where).toLowerCase()
    : undefined;
  if (format !== undefined && backing === undefined) {
    throw new UsageError(
      `invalid storage '${name}': backing_format is set but backing_file is not`,
    );
  }
  return {
    name,
    type,
    ...(file === undefined ? {} : { file }),
    ...(size === undefined ? {} : { size }),
    interface: iface,
    ...(media === "cdrom" ? { media } : {}),
    ...(backing === undefined ? {} : { backing_file: backing }),
    ...(format === undefined ? {} : { backing_format: format }),
    ...(Object.keys(extras).length === 0 ? {} : { options: extras }),
  };
}

function virtfsOf(raw: Record<string, unknown>, name: string): VirtfsStorage {
  const where = ` for storage '${name}'`;
  const { item, extras } = liftOptions(raw, VIRTFS_KEYS, MANAGED_VIRTFS_KEYS, where);
  if (!given(item.path)) throw new UsageError(`invalid storage '${name}': virtfs needs a 'path'`);
  const path = absolutePath("path", item.path, where);
  let info: Deno.FileInfo | undefined;
  try {
    info = Deno.statSync(path);
  } catch { /* made at start, as maqet makes it */ }
  if (info !== undefined && !info.isDirectory) {
    throw new UsageError(
      `invalid path ${show(path)}${where}: it is a file, and a virtfs share is a folder`,
    );
  }
  return {
    name,
    type: "virtfs",
    path,
    mount_tag: given(item.mount_tag) ? text("mount_tag", item.mount_tag, where) : name,
    security_model: given(item.security_model)
      ? choice(
        String(item.security_model).toLowerCase() === "mapped"
          ? "mapped-xattr"
          : item.security_model,
        SECURITY_MODELS,
        (shown) => `unknown security_model ${shown}${where} ` +
          "(expected passthrough, mapped-xattr (or mapped), mapped-file or none)",
      )
      : "mapped-xattr",
    readonly: given(item.readonly) ? flagOf("readonly", item.readonly, where) : false,
    ...(Object.keys(extras).length === 0 ? {} : { options: extras }),
  };
}

function storageItemOf(item: unknown, i: number, warn: (message: string) => void): StorageItem {
  if (!isMap(item)) {
    throw new UsageError(
      `invalid storage[${i}] ${show(item)}: expected a map, got ${kindOf(item)}`,
    );
  }
  const name = given(item.name) ? item.name : `storage${i}`;
  if (typeof name !== "string") {
    throw new UsageError(`invalid storage name ${show(name)}: expected text, got ${kindOf(name)}`);
  }
  const problem = storageNameProblem(name);
  if (problem !== undefined) throw new UsageError(`invalid storage name ${show(name)}: ${problem}`);
  const typeGiven = given(item.type) ? item.type : "qcow2";
  const type = typeof typeGiven === "string" ? typeGiven.toLowerCase() : typeGiven;
  if (type !== "qcow2" && type !== "raw" && type !== "virtfs") {
    throw new UsageError(
      `unknown storage type ${show(typeGiven)} (expected qcow2, raw or virtfs)`,
    );
  }
  const known = type === "virtfs" ? VIRTFS_KEYS : DISK_KEYS;
  for (const key of Object.keys(item)) {
    if (!known.has(key) && key !== "options") {
      const hint = didYouMean(key, [...known, "options"]);
      warn(`unknown storage key ${show(key)} in '${name}' (ignored)${hint}`);
    }
  }
  return type === "virtfs" ? virtfsOf(item, name) : diskOf(item, name, type);
}

function storageOf(value: unknown, warn: (message: string) => void): StorageItem[] {
  if (!Array.isArray(value)) {
    throw new UsageError(`invalid storage ${show(value)}: expected a list, got ${kindOf(value)}`);
  }
  const storage = value.map((item, i) => storageItemOf(item, i, warn));
  const seen = new Set<string>();
  for (const item of storage) {
    if (seen.has(item.name)) throw new UsageError(`duplicate storage name '${item.name}'`);
    seen.add(item.name);
  }
  const sata = storage.filter((item) => item.type !== "virtfs" && item.interface === "sata");
  if (sata.length > AHCI_PORTS) {
    throw new UsageError(`too many sata disks (${sata.length}): the AHCI controller has 6 ports`);
  }
  return storage;
}

/**
 * Checks a raw config (YAML or merged) and returns it as a `VmConfig` with defaults filled in.
 * Throws a one-line UsageError for the first problem (a qvm command as a key is one); unknown
 * top-level keys, a setting given both as a key and in `arguments`, and `nographic` only `warn`.
 * `null` values mean "not set".
 */
export function validateConfig(
  input: Record<string, unknown>,
  options?: ValidateOptions,
): VmConfig {
  const warn = options?.warn ?? (() => {});
  if (!isMap(input)) {
    throw new UsageError(
      `invalid config ${show(input)}: expected a map of keys, got ${kindOf(input)}`,
    );
  }
  checkCommandKeys(input);
  const raw = settleShorthands(input, warn);
  for (const key of Object.keys(raw)) {
    if (key === "log_file" && raw[key] !== undefined) {
      warn("log_file is maqet's own log (ignored): see 'qvm logs VM' and 'qvm logs VM --qemu'");
    } else if (!KNOWN_KEYS.has(key) && raw[key] !== undefined) {
      warn(`unknown config key ${show(key)} (ignored)${didYouMean(key, KNOWN_KEYS)}`);
    }
  }
  const name = typeof raw.name === "number" ? String(raw.name) : raw.name;
  const config: VmConfig = {
    ...(given(name) ? { name: validateName(name as string) } : {}),
    ...(given(raw.binary) ? { binary: text("binary", raw.binary) } : {}),
    ...(given(raw.memory) ? { memory: memoryOf(raw.memory) } : {}),
    ...(given(raw.cpu) ? { cpu: cpuOf(raw.cpu) } : {}),
    ...(given(raw.display) ? { display: text("display", raw.display) } : {}),
    ...(given(raw.vga) ? { vga: text("vga", raw.vga) } : {}),
    arguments: given(raw.arguments) ? argumentsOf(raw.arguments, warn) : [],
    args: given(raw.args) ? argsOf(raw.args, warn) : [],
    storage: given(raw.storage) ? storageOf(raw.storage, warn) : [],
    ...cloudSectionsOf(raw, warn, options?.portHolder),
  };
  checkSingletons({ arguments: config.arguments });
  if (config.display !== undefined) checkTerminal("display", config.display, warn);
  return inOrderOf(config, Object.keys(raw));
}

/**
 * `config` with its keys in the order of `order` (the config files' order), then the defaults:
 * the order of `memory`, `cpu`, `display`, `vga`, `args`, `arguments` and `storage` is the order
 * of their QEMU options, as in maqet (see `configArgv`).
 */
function inOrderOf(config: VmConfig, order: string[]): VmConfig {
  const out: Record<string, unknown> = {};
  const from = config as unknown as Record<string, unknown>;
  for (const key of [...order, ...Object.keys(config)]) {
    if (Object.hasOwn(from, key) && !Object.hasOwn(out, key)) out[key] = from[key];
  }
  return out as unknown as VmConfig;
}
