/**
 * What a config's own QEMU options (`arguments` and raw `args`) reach on the host: the files they
 * name (disk images, kernels, logs, ...), whether QEMU writes them, and the host ports that
 * user-mode networks forward (`hostfwd=`). Pure: read from the argv qvm passes to QEMU, whose
 * paths a stored config holds absolute.
 */
import {
  argumentOption,
  PATH_KEYS,
  PATH_OPTIONS,
  type PortForward,
  splitOptionText,
  stripDashes,
  type VmConfig,
} from "../config/mod.ts";
import { argumentArgv, isNographic, isStdioItem, passedArgs } from "./argv.ts";

/** One file a QEMU option names. */
export interface OptionFile {
  path: string;
  /** The option naming it, without dashes (`drive`, `hda`, `kernel`, `chardev`, ...). */
  option: string;
  /** A disk image QEMU opens as a block device. */
  disk: boolean;
  /** QEMU writes it (a writable disk, a log or character device output). */
  writable: boolean;
  /** The format the option pins (`format=`), if any. */
  format?: string;
}

/** Options whose value is a disk image QEMU opens writable (`-hda FILE`, `-pflash FILE`, ...). */
const WRITABLE_DISK_OPTIONS = new Set(["hda", "hdb", "hdc", "hdd", "fda", "fdb", "sd", "mtdblock"]);
WRITABLE_DISK_OPTIONS.add("pflash");

/** Character device options whose short form `file:PATH` is a file QEMU writes. */
const CHARDEV_OPTIONS = new Set(["serial", "parallel", "monitor", "qmp", "qmp-pretty", "debugcon"]);

/** True when QEMU writes the file of sub-option `key` (`-chardev file,path=`, `logfile=`). */
function writtenKey(option: string, backend: string | undefined, key: string): boolean {
  return key === "logfile" || (option === "chardev" && backend === "file" && key === "path");
}

/** Keys that name a node, not a file (`-blockdev file=NODE`). */
const NODE_KEYS: Readonly<Record<string, ReadonlySet<string>>> = {
  blockdev: new Set(["file", "backing"]),
};

const ON = new Set(["on", "yes", "true", "y"]);

/** The `-option value` pairs of a config's `arguments` (as qvm passes them) and raw `args`. */
function optionPairs(config: Pick<VmConfig, "arguments" | "args">): [string, string | undefined][] {
  const argv: string[] = [];
  for (const item of config.arguments) {
    if (!isNographic(argumentOption(item)) && !isStdioItem(item)) argv.push(...argumentArgv(item));
  }
  argv.push(...passedArgs(config.args));
  const pairs: [string, string | undefined][] = [];
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith("-")) {
      pairs.push(["hda", argv[i]]); // a bare image, as QEMU reads one
      continue;
    }
    const value = argv[i + 1];
    const takes = value !== undefined && !value.startsWith("-");
    pairs.push([stripDashes(argv[i]), takes ? value : undefined]);
    if (takes) i++;
  }
  return pairs;
}

/** The `key=value` parts of option text (`file=/x,if=virtio`), by key (the last one counts). */
function partsOf(text: string): { head: string[]; keys: Map<string, string[]> } {
  const head: string[] = [];
  const keys = new Map<string, string[]>();
  for (const part of splitOptionText(text)) {
    const at = part.indexOf("=");
    if (at <= 0) {
      head.push(part);
      continue;
    }
    const key = part.slice(0, at);
    keys.set(key, [...keys.get(key) ?? [], part.slice(at + 1)]);
  }
  return { head, keys };
}

function isOn(values: string[] | undefined): boolean {
  return values !== undefined && ON.has(values.at(-1)!.toLowerCase());
}

function filesOfOption(option: string, value: string): OptionFile[] {
  const file = (path: string, props: Omit<OptionFile, "path" | "option">): OptionFile[] =>
    path.startsWith("/") ? [{ path, option, ...props }] : [];
  if (PATH_OPTIONS.has(option)) {
    const disk = WRITABLE_DISK_OPTIONS.has(option) || option === "cdrom";
    return file(value, { disk, writable: WRITABLE_DISK_OPTIONS.has(option) });
  }
  if (CHARDEV_OPTIONS.has(option)) {
    const match = /^file:(.+)$/s.exec(value);
    return match ? file(match[1], { disk: false, writable: true }) : [];
  }
  const { head, keys } = partsOf(value);
  const found: OptionFile[] = [];
  const format = keys.get("format")?.at(-1);
  if (option === "drive") {
    const readOnly = isOn(keys.get("readonly")) || isOn(keys.get("read-only")) ||
      isOn(keys.get("snapshot")) || keys.get("media")?.at(-1) === "cdrom";
    for (const path of keys.get("file") ?? []) {
      found.push(...file(path, { disk: true, writable: !readOnly, ...(format ? { format } : {}) }));
    }
    return found;
  }
  for (const [key, values] of keys) {
    const last = key.split(".").at(-1)!;
    if (!PATH_KEYS.has(last) || NODE_KEYS[option]?.has(last)) continue;
    const disk = option === "blockdev";
    const writable = disk ? !isOn(keys.get("read-only")) : writtenKey(option, head[0], last);
    for (const path of values) found.push(...file(path, { disk, writable }));
  }
  return found;
}

/** Every absolute file path a config's `arguments` and raw `args` name, in option order. */
export function optionFiles(config: Pick<VmConfig, "arguments" | "args">): OptionFile[] {
  return optionPairs(config).flatMap(([option, value]) =>
    value === undefined ? [] : filesOfOption(option, value)
  );
}

/** One `hostfwd=[tcp|udp]:[ADDR]:HOST-[GUESTADDR]:GUEST` as a forward (QEMU's empty ADDR: all). */
function parseHostfwd(text: string): PortForward | undefined {
  const match = /^(tcp|udp)?:([^:]*):(\d+)-[^:]*:(\d+)$/i.exec(text);
  if (!match) return undefined;
  return {
    proto: (match[1]?.toLowerCase() ?? "tcp") as PortForward["proto"],
    address: match[2] === "" ? "0.0.0.0" : match[2],
    host: Number(match[3]),
    guest: Number(match[4]),
  };
}

/**
 * The port forwards a config's own `-netdev user,...` and `-nic user,...` options set up
 * (`hostfwd=tcp::2222-:22`), besides the ones of its `network:` section. Fixed host ports; an
 * empty host address is QEMU's default, every address (`0.0.0.0`).
 */
export function optionForwards(config: Pick<VmConfig, "arguments" | "args">): PortForward[] {
  const forwards: PortForward[] = [];
  for (const [option, value] of optionPairs(config)) {
    if ((option !== "netdev" && option !== "nic") || value === undefined) continue;
    const { head, keys } = partsOf(value);
    if (head[0] !== "user") continue;
    for (const spec of keys.get("hostfwd") ?? []) {
      const forward = parseHostfwd(spec);
      if (forward) forwards.push(forward);
    }
  }
  return forwards;
}
