/**
 * What a VM defined from someone else's domain XML brings onto this host: the host paths it
 * reaches (and whether the guest may write them), the commands cloud-init runs in the guest, SSH
 * keys that are not the user's own, and ports that listen beyond this host. `import-libvirt` lists
 * them, and refuses a writable path in a system folder as `add` refuses a disk there.
 */
import { UsageError } from "../errors.ts";
import {
  PATH_KEYS,
  PATH_OPTIONS,
  splitOptionText,
  stripDashes,
  systemFolderOf,
  type VmConfig,
} from "../config/mod.ts";
import { argumentArgv } from "../qemu/argv.ts";
import { optionGroups } from "./_export_args.ts";

/** One host path the VM reaches. */
export interface HostPath {
  path: string;
  /** What reaches it: `disk root`, `share data`, `-kernel`, `emulator`, ... */
  by: string;
  /** True when the guest (or QEMU for it) may write to it. */
  writable: boolean;
}

/** What a config brings in; every list is empty for a VM that reaches nothing of note. */
export interface Exposure {
  paths: HostPath[];
  /** Commands cloud-init runs in the guest (`runcmd` items, a `user_data` document). */
  commands: string[];
  /** `ssh_authorized_keys` lines that are none of `ownKeys`. */
  foreignKeys: string[];
  /** Ports that listen on an address other hosts reach: `0.0.0.0:2222 -> guest 22/tcp`. */
  ports: string[];
}

/** Options that attach a disk image QEMU opens for writing unless told `readonly`. */
const DRIVE_OPTIONS = new Set([
  "drive",
  "blockdev",
  "hda",
  "hdb",
  "hdc",
  "hdd",
  "fda",
  "fdb",
  "sd",
  "mtdblock",
  "pflash",
]);
/** Options whose value is a file QEMU writes (logs, the pid file, guest RAM). */
const WRITTEN_FILE_OPTIONS = new Set(["D", "pidfile", "mem-path"]);
/** Sub-option keys naming a file QEMU writes to (a chardev's log, guest RAM). */
const WRITTEN_KEYS = new Set(["logfile", "mem-path"]);
/** Options taking a character device spec (`file:PATH`, `tcp:HOST:PORT,server=on`). */
const CHARDEV_OPTIONS = new Set([
  "serial",
  "parallel",
  "monitor",
  "qmp",
  "qmp-pretty",
  "debugcon",
  "gdb",
  "incoming",
]);
const READONLY = /(^|,)(readonly|read-only|snapshot)=(on|true|yes)(,|$)/;

/** A listener's address is only this host's: 127.0.0.0/8, ::1, localhost. */
function loopback(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, "");
  return /^127\./.test(bare) || bare === "::1" || bare === "localhost";
}

/** The address other hosts see: an empty one is every address QEMU can bind. */
function shown(address: string): string {
  return address === "" ? "0.0.0.0" : address;
}

/** `tcp:[HOST]:PORT[-GHOST:GPORT]` style specs of `hostfwd=` (`tcp::2222-:22`). */
function hostForward(spec: string): string | undefined {
  const match = /^(tcp|udp)?:?([^:]*):(\d+)-[^:]*:(\d+)$/.exec(spec);
  if (!match) return undefined;
  const [, proto = "tcp", address, host, guest] = match;
  return loopback(address) ? undefined : `${shown(address)}:${host} -> guest ${guest}/${proto}`;
}

/** A character device spec that listens: `tcp:HOST:PORT,server=on`, `telnet:...`. */
function chardevListener(option: string, parts: string[]): string | undefined {
  const match = /^(tcp|telnet|websocket):([^:]*|\[[^\]]*\]):(\d+)$/.exec(parts[0]);
  if (!match) return undefined;
  const server = option === "incoming" || option === "gdb" ||
    parts.some((p) => p === "server" || /^server=(on|true|yes)$/.test(p));
  if (!server || loopback(match[2])) return undefined;
  return `${shown(match[2])}:${match[3]} (${"-" + option})`;
}

/** Listeners in key=value option text: a socket chardev server, VNC, SPICE, `listen=`. */
function optionListeners(option: string, parts: string[]): string[] {
  const kv = new Map<string, string>();
  for (const part of parts) {
    const at = part.indexOf("=");
    if (at > 0) kv.set(part.slice(0, at), part.slice(at + 1));
  }
  const found: string[] = [];
  const server = ["on", "true", "yes"].includes(kv.get("server") ?? "") || parts.includes("server");
  if (option === "chardev" && parts[0] === "socket" && kv.has("port") && server) {
    const host = kv.get("host") ?? "";
    if (!loopback(host)) found.push(`${shown(host)}:${kv.get("port")} (-chardev)`);
  }
  if (option === "vnc") {
    const match = /^([^:]*|\[[^\]]*\]):(\d+)$/.exec(parts[0]);
    if (match && !loopback(match[1])) {
      found.push(`${shown(match[1])}:${5900 + Number(match[2])} (-vnc)`);
    }
  }
  if (option === "spice") {
    const address = kv.get("addr") ?? "";
    for (const key of ["port", "tls-port"]) {
      if (kv.has(key) && !loopback(address)) {
        found.push(`${shown(address)}:${kv.get(key)} (-spice)`);
      }
    }
  }
  const listen = kv.get("listen");
  if (listen !== undefined) {
    const match = /^(.*):(\d+)$/.exec(listen);
    if (match && !loopback(match[1])) found.push(`${shown(match[1])}:${match[2]} (-${option})`);
  }
  for (const part of parts) {
    if (part.startsWith("hostfwd=")) {
      const forward = hostForward(part.slice(8));
      if (forward !== undefined) found.push(forward);
    }
  }
  return found;
}

/** True when `key=PATH` of option `-option parts...` is a file QEMU (or the guest) writes. */
function writesTo(option: string, parts: string[], key: string): boolean {
  const readonly = READONLY.test(parts.join(","));
  if (WRITTEN_KEYS.has(key)) return true;
  if (DRIVE_OPTIONS.has(option)) return (key === "file" || key === "filename") && !readonly;
  if (option === "virtfs" || option === "fsdev") return key === "path" && !readonly;
  if (option === "chardev") {
    // A file or pipe is written; a socket is made at the path when it is the server.
    const server = parts.some((p) => p === "server" || /^server=(on|true|yes)$/.test(p));
    return key === "path" && (parts[0] !== "socket" || server);
  }
  // A network dump is written to its file.
  return option === "object" && parts[0] === "filter-dump" && key === "file";
}

/** Paths and listeners in one QEMU option group (`-drive file=/x,if=virtio`). */
function scanOption(group: string[], exposure: Exposure): void {
  const option = stripDashes(group[0]);
  if (!group[0].startsWith("-")) return;
  if (option === "s") {
    exposure.ports.push("0.0.0.0:1234 (-s, the gdb server)");
    return;
  }
  const value = group[1];
  if (value === undefined) return;
  const by = `-${option}`;
  if (PATH_OPTIONS.has(option) || WRITTEN_FILE_OPTIONS.has(option)) {
    if (value.startsWith("/")) {
      const writable = WRITTEN_FILE_OPTIONS.has(option) ||
        (DRIVE_OPTIONS.has(option) && option !== "cdrom");
      exposure.paths.push({ path: value, by, writable });
    }
    return;
  }
  const parts = splitOptionText(value);
  if (CHARDEV_OPTIONS.has(option)) {
    const spec = /^(file|pipe|unix):(\/.*)$/s.exec(parts[0]);
    if (spec) exposure.paths.push({ path: spec[2], by, writable: spec[1] !== "unix" });
    const listener = chardevListener(option, parts);
    if (listener !== undefined) exposure.ports.push(listener);
  }
  for (const part of parts) {
    const at = part.indexOf("=");
    if (at <= 0) continue;
    const key = part.slice(0, at).split(".").at(-1)!;
    const path = part.slice(at + 1);
    if (!path.startsWith("/") || !(PATH_KEYS.has(key) || WRITTEN_KEYS.has(key))) continue;
    exposure.paths.push({ path, by, writable: writesTo(option, parts, key) });
  }
  exposure.ports.push(...optionListeners(option, parts));
}

/** The key's type and data (`ssh-ed25519 AAAA...`), which say which key it is. */
function keyOf(line: string): string {
  return line.trim().split(/\s+/).slice(0, 2).join(" ");
}

/** A key line as one short word: its type, the start of its data, its comment. */
export function shortKey(line: string): string {
  const [type, data = "", ...comment] = line.trim().split(/\s+/);
  return `${type} ${data.slice(0, 12)}…${comment.length > 0 ? ` ${comment.join(" ")}` : ""}`;
}

/**
 * Everything `config` brings onto this host (see the module comment). `ownKeys` are the key
 * lines of the user running qvm; qvm's own key and `~/.ssh/*.pub` are not foreign.
 */
export function exposureOf(config: VmConfig, options: { ownKeys: readonly string[] }): Exposure {
  const exposure: Exposure = { paths: [], commands: [], foreignKeys: [], ports: [] };
  if (config.binary?.includes("/")) {
    exposure.paths.push({ path: config.binary, by: "emulator", writable: false });
  }
  if (config.image !== undefined) {
    exposure.paths.push({ path: config.image, by: "image", writable: false });
  }
  for (const item of config.storage) {
    if (item.type === "virtfs") {
      exposure.paths.push({ path: item.path, by: `share ${item.name}`, writable: !item.readonly });
      continue;
    }
    if (item.file !== undefined) {
      const readonly = item.media === "cdrom" ||
        ["on", "true", "yes"].includes(item.options?.readonly ?? "");
      exposure.paths.push({ path: item.file, by: `disk ${item.name}`, writable: !readonly });
    }
    if (item.backing_file !== undefined) {
      exposure.paths.push({
        path: item.backing_file,
        by: `backing file of disk ${item.name}`,
        writable: false,
      });
    }
  }
  for (const item of config.arguments) scanOption(argumentArgv(item), exposure);
  for (const group of optionGroups(config.args)) scanOption(group, exposure);
  for (const forward of config.network?.ports ?? []) {
    if (loopback(forward.address)) continue;
    exposure.ports.push(
      `${forward.address}:${forward.host} -> guest ${forward.guest}/${forward.proto}`,
    );
  }
  const cloud = config.cloud_init;
  for (const command of cloud?.runcmd ?? []) {
    exposure.commands.push(JSON.stringify(Array.isArray(command) ? command.join(" ") : command));
  }
  if (cloud?.user_data !== undefined) {
    const lines = cloud.user_data.split("\n").filter((l) => l.trim() !== "").length;
    const kind = cloud.user_data.startsWith("#!") ? "a script" : "a #cloud-config document";
    exposure.commands.push(`user_data (${kind} of ${lines} lines, run as given)`);
  }
  const own = new Set(options.ownKeys.map(keyOf));
  for (const key of cloud?.ssh_authorized_keys ?? []) {
    if (!own.has(keyOf(key))) exposure.foreignKeys.push(key.trim());
  }
  return exposure;
}

/**
 * Refuses (UsageError, exit 3) a path the guest could write that lies in a system folder (`/etc`,
 * `/usr`, `/boot`, `/dev`, ..., also through a symlink): the rule `add` applies to disks, for
 * every way a domain reaches a file.
 */
export function refuseSystemWrites(exposure: Exposure): void {
  for (const { path, by, writable } of exposure.paths) {
    if (!writable) continue;
    const folder = systemFolderOf(path);
    if (folder !== undefined) {
      throw new UsageError(
        `refusing ${by} at ${path}: the guest could write to it, and ${folder} is a system folder`,
      );
    }
  }
}
