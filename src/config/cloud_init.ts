/**
 * The `cloud_init:` and `guest_agent:` sections, qvm extensions of maqet's format. cloud_init
 * describes a NoCloud seed qvm builds at start: `user`, `ssh_authorized_keys` (key lines or .pub
 * files), `hostname`, `packages`, `runcmd`, or `user_data` (a `#cloud-config` document or a script,
 * inline or a file) passed through verbatim. Files are read when the config is validated, so the
 * stored config holds their text and a start never depends on them.
 */
import { isAbsolute, resolve } from "../path.ts";
import { didYouMean, UsageError } from "../errors.ts";
import { isMap, kindOf, show } from "./_util.ts";

/** A validated `cloud_init:` section; absent keys take their defaults at start. */
export interface CloudInitConfig {
  /** Login user created in the guest (default: the user running qvm). */
  user?: string;
  /** Public key lines (default: `~/.ssh/*.pub`); qvm's own key is always added. */
  ssh_authorized_keys?: string[];
  /** Guest host name (default: the VM name). */
  hostname?: string;
  packages?: string[];
  runcmd?: (string | string[])[];
  /** Verbatim user-data (`#cloud-config ...` or `#!...`); replaces the generated one. */
  user_data?: string;
}

const CLOUD_INIT_KEYS = new Set([
  "user",
  "ssh_authorized_keys",
  "hostname",
  "packages",
  "runcmd",
  "user_data",
]);
/** Keys whose settings live in the generated user-data, so `user_data` cannot be combined with them. */
const USER_DATA_KEYS = ["user", "ssh_authorized_keys", "packages", "runcmd"] as const;
const USER_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;
/**
 * Accounts a Linux guest has for itself (Debian's base-passwd, the services of common cloud
 * images, Red Hat's): made the login user, cloud-init would give a daemon's account a shell, a
 * sudo rule and the key. `root` among them: cloud-init's `disable_root` turns root's keys into a
 * "log in as another user" message, so qvm could never log in.
 */
const SYSTEM_ACCOUNTS = new Set([
  "root",
  "daemon",
  "bin",
  "sys",
  "sync",
  "games",
  "man",
  "lp",
  "mail",
  "news",
  "uucp",
  "proxy",
  "www-data",
  "backup",
  "list",
  "irc",
  "gnats",
  "nobody",
  "messagebus",
  "sshd",
  "syslog",
  "uuidd",
  "tcpdump",
  "tss",
  "landscape",
  "pollinate",
  "usbmux",
  "lxd",
  "dnsmasq",
  "avahi",
  "polkitd",
  "rtkit",
  "colord",
  "ntp",
  "chrony",
  "postfix",
  "statd",
  "rpc",
  "rpcuser",
  "adm",
  "halt",
  "shutdown",
  "operator",
  "ftp",
  "dbus",
  "qemu",
  "libvirt-qemu",
  "cloud-init",
]);

/**
 * True for an account a guest keeps for itself (see `SYSTEM_ACCOUNTS`), or named as such
 * (`_apt`, `systemd-network`): never qvm's login user.
 */
export function isSystemAccount(name: string): boolean {
  return SYSTEM_ACCOUNTS.has(name) || name.startsWith("_") || name.startsWith("systemd-");
}
const LABEL = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const HOSTNAME_PATTERN = new RegExp(`^${LABEL}(\\.${LABEL})*$`);
const PACKAGE_PATTERN = /^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:_-]+)?$/;
const KEY_TYPE_PATTERN =
  /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$/;
const MAX_FILE_BYTES = 1 << 20;

/** True when `line` is one OpenSSH public key: a known type, base64 data, an optional comment. */
export function isPublicKeyLine(line: string): boolean {
  const [type, data] = line.trim().split(/\s+/);
  if (!type || !data || !KEY_TYPE_PATTERN.test(type)) return false;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(data)) return false;
  try {
    // The blob starts with the key type again, as a length-prefixed string.
    const blob = atob(data);
    const length = (blob.charCodeAt(0) << 24) | (blob.charCodeAt(1) << 16) |
      (blob.charCodeAt(2) << 8) | blob.charCodeAt(3);
    return blob.slice(4, 4 + length) === type;
  } catch {
    return false;
  }
}

/** True when `text` is user-data cloud-init runs as given: a `#cloud-config` document or a script. */
export function isUserData(text: string): boolean {
  const first = text.replace(/^\uFEFF/, "").split("\n", 1)[0].trimEnd();
  return first === "#cloud-config" || /^#!\S/.test(first);
}

function readSmallFile(what: string, path: string): string {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    throw new UsageError(`${what}: file ${show(path)} not found`);
  }
  if (!info.isFile) throw new UsageError(`${what}: ${show(path)} is not a file`);
  if (info.size > MAX_FILE_BYTES) throw new UsageError(`${what}: ${show(path)} is over 1 MiB`);
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (error) {
    throw new UsageError(`${what}: cannot read ${show(path)} (${(error as Error).name})`);
  }
  try {
    // Decoding leniently would change each invalid byte into U+FFFD without a word.
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new UsageError(`${what}: ${show(path)} is not UTF-8 text`);
  }
}

function stringList(key: string, value: unknown): string[] {
  if (!Array.isArray(value)) {
    throw new UsageError(
      `invalid cloud_init.${key} ${show(value)}: expected a list, got ${kindOf(value)}`,
    );
  }
  return value.map((item, i) => {
    if (typeof item !== "string" || item.trim() === "") {
      throw new UsageError(
        `invalid cloud_init.${key}[${i}] ${show(item)}: expected a non-empty string`,
      );
    }
    return item;
  });
}

/** Key lines from one `ssh_authorized_keys` item: a key line, or a file of key lines. */
function keysOf(item: string, i: number): string[] {
  const where = `invalid cloud_init.ssh_authorized_keys[${i}]`;
  if (isPublicKeyLine(item)) return [item.trim()];
  if (!item.includes("/") && !item.endsWith(".pub")) {
    throw new UsageError(`${where} ${show(item)}: not an OpenSSH public key line nor a .pub file`);
  }
  const lines = readSmallFile(where, item).split("\n").map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  if (lines.length === 0 || !lines.every(isPublicKeyLine)) {
    throw new UsageError(`${where}: ${show(item)} is not an OpenSSH public key file`);
  }
  return lines;
}

function userDataOf(value: unknown): string {
  if (typeof value !== "string" || value.trim() === "") {
    throw new UsageError(
      `invalid cloud_init.user_data ${show(value)}: expected a file name or inline text`,
    );
  }
  const inline = value.startsWith("#") || value.includes("\n");
  const text = inline ? value : readSmallFile("invalid cloud_init.user_data", value);
  if (!isUserData(text)) {
    throw new UsageError(
      `invalid cloud_init.user_data${inline ? "" : ` ${show(value)}`}: it must start with ` +
        "'#cloud-config' or '#!' (a script)",
    );
  }
  return text;
}

function runcmdOf(value: unknown): (string | string[])[] {
  if (!Array.isArray(value)) {
    throw new UsageError(
      `invalid cloud_init.runcmd ${show(value)}: expected a list, got ${kindOf(value)}`,
    );
  }
  return value.map((item, i) => {
    if (typeof item === "string" && item.trim() !== "") return item;
    if (Array.isArray(item) && item.length > 0 && item.every((w) => typeof w === "string")) {
      return item as string[];
    }
    throw new UsageError(
      `invalid cloud_init.runcmd[${i}] ${show(item)}: expected a shell line or a list of words`,
    );
  });
}

/**
 * Validates a `cloud_init:` section (`null` or `{}` means all defaults). Key files and a
 * `user_data` file are read now; their text is what the config keeps.
 */
export function cloudInitOf(value: unknown, warn: (message: string) => void): CloudInitConfig {
  if (value === null) return {};
  if (!isMap(value)) {
    throw new UsageError(`invalid cloud_init ${show(value)}: expected a map, got ${kindOf(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (!CLOUD_INIT_KEYS.has(key)) {
      warn(`unknown key cloud_init.${key} (ignored)${didYouMean(key, CLOUD_INIT_KEYS)}`);
    }
  }
  const out: CloudInitConfig = {};
  const v = (key: string) => value[key] ?? undefined;
  if (v("user") !== undefined) {
    const user = v("user");
    if (typeof user !== "string" || !USER_PATTERN.test(user)) {
      throw new UsageError(
        `invalid cloud_init.user ${show(user)}: use a login name such as 'dev' (lower-case ` +
          "letters, digits, '_' and '-')",
      );
    }
    if (isSystemAccount(user)) {
      throw new UsageError(
        `invalid cloud_init.user ${show(user)}: it is an account the guest keeps for itself ` +
          "(root or a system account); use a login name such as 'dev'",
      );
    }
    out.user = user;
  }
  if (v("ssh_authorized_keys") !== undefined) {
    out.ssh_authorized_keys = stringList("ssh_authorized_keys", v("ssh_authorized_keys"))
      .flatMap(keysOf);
  }
  if (v("hostname") !== undefined) {
    const hostname = v("hostname");
    if (
      typeof hostname !== "string" || hostname.length > 253 || !HOSTNAME_PATTERN.test(hostname)
    ) {
      throw new UsageError(
        `invalid cloud_init.hostname ${show(hostname)}: use letters, digits and '-', labels ` +
          "separated by '.'",
      );
    }
    out.hostname = hostname;
  }
  if (v("packages") !== undefined) {
    out.packages = stringList("packages", v("packages")).map((name, i) => {
      if (!PACKAGE_PATTERN.test(name)) {
        throw new UsageError(`invalid cloud_init.packages[${i}] ${show(name)}: not a package name`);
      }
      return name;
    });
  }
  if (v("runcmd") !== undefined) out.runcmd = runcmdOf(v("runcmd"));
  if (v("user_data") !== undefined) {
    const clash = USER_DATA_KEYS.find((key) => out[key] !== undefined);
    if (clash) {
      throw new UsageError(
        `invalid cloud_init: user_data replaces the generated user-data, so it cannot be ` +
          `combined with cloud_init.${clash}`,
      );
    }
    out.user_data = userDataOf(v("user_data"));
  }
  return out;
}

/** Validates `guest_agent:` (a boolean). */
export function guestAgentOf(value: unknown): boolean {
  if (typeof value !== "boolean") {
    throw new UsageError(`invalid guest_agent ${show(value)}: expected true or false`);
  }
  return value;
}

/**
 * Resolves the file names of qvm's extension keys against the config file's folder: `image`,
 * and in `cloud_init:` the `ssh_authorized_keys` items that are not key lines and a `user_data`
 * that is not inline text.
 */
export function resolveCloudInitPaths(config: Record<string, unknown>, dir: string): void {
  const at = (path: string) => isAbsolute(path) ? path : resolve(dir, path);
  if (typeof config.image === "string" && config.image.trim() !== "") {
    config.image = at(config.image);
  }
  const section = config.cloud_init;
  if (!isMap(section)) return;
  if (Array.isArray(section.ssh_authorized_keys)) {
    section.ssh_authorized_keys = section.ssh_authorized_keys.map((item) =>
      typeof item === "string" && !isPublicKeyLine(item) &&
        (item.includes("/") || item.endsWith(".pub"))
        ? at(item)
        : item
    );
  }
  const userData = section.user_data;
  const inline = typeof userData === "string" &&
    (userData.startsWith("#") || userData.includes("\n") || userData.trim() === "");
  if (typeof userData === "string" && !inline) {
    section.user_data = at(userData);
  }
}
