/**
 * qvm's own SSH identity and the OpenSSH command line `qvm ssh` runs: one ed25519 key pair in
 * the data dir (made with ssh-keygen on first need, private key 0600, never replaced), and a
 * known_hosts file per VM, keyed by a stable alias so a new `auto` port does not look like a new host.
 */
import { QvmError, TimeoutError } from "../errors.ts";
import { sleep } from "../timers.ts";
import { shellQuote } from "../shell.ts";
import { ensurePrivateDir } from "../state/mod.ts";
import { after } from "../timers.ts";

/** The key pair's paths under `dataDir`. */
export function keyPaths(dataDir: string): { private: string; public: string } {
  return { private: `${dataDir}/ssh/id_ed25519`, public: `${dataDir}/ssh/id_ed25519.pub` };
}

/** How long a first key creation waits for another qvm making the key at the same time. */
const KEY_LOCK_WAIT_MS = 30_000;

/** What is at `path` (never following a link), or undefined when nothing is. */
function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Unlinks what is at `path` unless it is a plain file (a regular file with no other name): a
 * symlink or hard link is removed, never followed, so a tool writing there makes a file of its
 * own. Says so through `warn`; a folder is refused.
 */
export function clearForeignFile(path: string, warn?: (message: string) => void): void {
  const info = lstatOrUndefined(path);
  if (!info || (info.isFile && (info.nlink ?? 1) <= 1)) return;
  if (info.isDirectory) {
    throw new QvmError(`${path} is a folder where qvm keeps a file: move it away`);
  }
  Deno.removeSync(path);
  const what = info.isSymlink ? "a symlink" : info.isFile ? "a hard link" : "not a regular file";
  warn?.(`removed ${path}: it was ${what}, and qvm never writes through one`);
}

async function runKeygen(args: string[]): Promise<Deno.CommandOutput> {
  try {
    return await new Deno.Command("ssh-keygen", {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new QvmError("ssh-keygen not found: install openssh-client");
    }
    throw error;
  }
}

function keygenFailure(result: Deno.CommandOutput): string {
  const message = new TextDecoder().decode(result.stderr).trim().split("\n")[0];
  return message || `exit status ${result.code}`;
}

/**
 * The private key at `path` as ssh accepts it: a regular file of mode 0600. A key others can read
 * (ssh refuses it: "UNPROTECTED PRIVATE KEY FILE") is set back to 0600, said through `warn`; a
 * symlink in its place is refused. False when there is no key.
 */
function privateKeyReady(path: string, warn?: (message: string) => void): boolean {
  const info = lstatOrUndefined(path);
  if (!info) return false;
  if (!info.isFile) {
    throw new QvmError(
      `qvm's SSH key ${path} is ${info.isSymlink ? "a symlink" : "not a regular file"}: ` +
        "qvm uses only a key file of its own there; move it away",
    );
  }
  const mode = (info.mode ?? 0o600) & 0o777;
  if ((mode & 0o077) !== 0) {
    Deno.chmodSync(path, 0o600);
    warn?.(
      `qvm's SSH key ${path} was mode ${mode.toString(8).padStart(4, "0")}, which ssh refuses: ` +
        "set to 0600",
    );
  }
  return true;
}

function readPublic(path: string): string | undefined {
  try {
    if (!lstatOrUndefined(path)?.isFile) return undefined;
    const line = Deno.readTextFileSync(path).trim();
    return line === "" ? undefined : line;
  } catch {
    return undefined;
  }
}

/** Writes `text` to `path` by a new file renamed into place (never through a link at `path`). */
function writeAside(path: string, text: string): void {
  const aside = `${path}.new-${crypto.randomUUID().slice(0, 8)}`;
  Deno.writeTextFileSync(aside, text, { mode: 0o644, createNew: true });
  Deno.renameSync(aside, path);
}

/** The public key line of the private key at `path`, read from the key with `ssh-keygen -y`. */
async function publicOf(path: string): Promise<string> {
  const result = await runKeygen(["-y", "-f", path]);
  const line = new TextDecoder().decode(result.stdout).trim();
  if (!result.success || line === "") {
    throw new QvmError(
      `cannot read qvm's SSH key ${path} (ssh-keygen -y: ${keygenFailure(result)}); qvm never ` +
        "replaces an existing key: move it away to have a new one made (VMs seeded with the old " +
        "one then no longer let qvm in)",
    );
  }
  return line;
}

/** Waits for the flock on `path` (made if absent; a link there is replaced, never followed). */
async function lockKeyFolder(path: string): Promise<Deno.FsFile> {
  clearForeignFile(path);
  const file = Deno.openSync(path, { read: true, write: true, create: true, mode: 0o600 });
  const deadline = Date.now() + KEY_LOCK_WAIT_MS;
  let pause = 5;
  while (!(await file.tryLock(true))) {
    if (Date.now() >= deadline) {
      file.close();
      throw new TimeoutError(`another qvm command has been making qvm's SSH key for too long`);
    }
    await sleep(pause);
    pause = Math.min(pause * 2, 100);
  }
  return file;
}

/** Makes a new key pair aside and links it into place; false when another key got there first. */
async function makeKey(paths: { private: string; public: string }): Promise<boolean> {
  const aside = `${paths.private}.new-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const result = await runKeygen(["-q", "-t", "ed25519", "-N", "", "-C", "qvm", "-f", aside]);
    if (!result.success) throw new QvmError(`ssh-keygen failed: ${keygenFailure(result)}`);
    Deno.chmodSync(aside, 0o600);
    try {
      Deno.linkSync(aside, paths.private); // atomic, and never over an existing key
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) return false;
      throw error;
    }
    Deno.renameSync(`${aside}.pub`, paths.public);
    return true;
  } finally {
    for (const leftover of [aside, `${aside}.pub`]) {
      try {
        Deno.removeSync(leftover);
      } catch { /* linked or renamed into place, or never made */ }
    }
  }
}

/** Removes what a qvm killed while making the key left (`id_ed25519.new-*`); under the lock. */
function removeLeftovers(dir: string): void {
  for (const entry of Deno.readDirSync(dir)) {
    if (!/^id_ed25519(\.pub)?\.new-/.test(entry.name)) continue;
    try {
      Deno.removeSync(`${dir}/${entry.name}`);
    } catch { /* gone */ }
  }
}

/**
 * Returns the public key line of qvm's key pair, making the pair on first need. An existing
 * private key is never replaced: a lost or emptied `.pub` is rebuilt from it (`ssh-keygen -y`),
 * and a key others can read is set back to 0600. A new pair is made once, under a lock, by
 * ssh-keygen under a temporary name and linked into place, so parallel first starts all get the
 * one key. `warn` hears what was repaired.
 */
export async function ensureKey(
  dataDir: string,
  options: { warn?: (message: string) => void } = {},
): Promise<string> {
  const paths = keyPaths(dataDir);
  const dir = `${dataDir}/ssh`;
  ensurePrivateDir(dir, { within: dataDir });
  if (privateKeyReady(paths.private, options.warn)) {
    const line = readPublic(paths.public);
    if (line !== undefined) return line;
  }
  const lock = await lockKeyFolder(`${dir}/id_ed25519.lock`);
  try {
    removeLeftovers(dir);
    if (!privateKeyReady(paths.private, options.warn)) {
      if (await makeKey(paths)) return readPublic(paths.public) ?? await publicOf(paths.private);
    }
    const line = readPublic(paths.public);
    if (line !== undefined) return line;
    const rebuilt = await publicOf(paths.private);
    clearForeignFile(paths.public, options.warn);
    writeAside(paths.public, rebuilt + "\n");
    options.warn?.(`rebuilt ${paths.public} from qvm's SSH key (ssh-keygen -y)`);
    return rebuilt;
  } finally {
    releaseLock(lock);
  }
}

function releaseLock(file: Deno.FsFile): void {
  try {
    file.unlockSync();
  } catch { /* closing drops it anyway */ }
  file.close();
}

/** What `checkKey` found of qvm's private key. */
export interface KeyCheck {
  /** `absent`: no key yet (made on first need); `fixed`: its mode was set back to 0600. */
  state: "ok" | "absent" | "problem" | "fixed";
  what: string;
}

/**
 * Checks qvm's private key as ssh will (for `doctor`): a mode others can read makes ssh refuse
 * it; with `fix` such a mode is set back to 0600. A symlink or other non-file is reported only.
 */
export function checkKey(dataDir: string, options: { fix?: boolean } = {}): KeyCheck {
  const path = keyPaths(dataDir).private;
  const info = lstatOrUndefined(path);
  if (!info) return { state: "absent", what: `no SSH key yet at ${path} (made on first need)` };
  if (!info.isFile) {
    return {
      state: "problem",
      what: `${path} is ${info.isSymlink ? "a symlink" : "not a regular file"}`,
    };
  }
  const mode = (info.mode ?? 0o600) & 0o777;
  if ((mode & 0o077) === 0) return { state: "ok", what: `SSH key ${path} is mode 0600` };
  const octal = mode.toString(8).padStart(4, "0");
  if (!options.fix) return { state: "problem", what: `SSH key ${path} is mode ${octal}` };
  Deno.chmodSync(path, 0o600);
  return { state: "fixed", what: `SSH key ${path} was mode ${octal}` };
}

/** The `~/.ssh/*.pub` key lines of the user running qvm (none when there is no such folder). */
export function homeKeys(isKey: (line: string) => boolean): string[] {
  const home = Deno.env.get("HOME");
  if (!home) return [];
  const keys: string[] = [];
  try {
    const names = [...Deno.readDirSync(`${home}/.ssh`)]
      .filter((e) => e.isFile && e.name.endsWith(".pub")).map((e) => e.name).sort();
    for (const name of names) {
      try {
        const lines = Deno.readTextFileSync(`${home}/.ssh/${name}`).split("\n").map((l) =>
          l.trim()
        );
        keys.push(...lines.filter(isKey));
      } catch { /* unreadable: skip */ }
    }
  } catch { /* no ~/.ssh */ }
  return keys;
}

/** What `sshArgv` needs. */
export interface SshTarget {
  user: string;
  port: number;
  /** Host address of the forward (0.0.0.0 is reached on 127.0.0.1). */
  address: string;
  key: string;
  knownHosts: string;
  /** Stable name for the guest in known_hosts (e.g. `qvm-<id>`). */
  alias: string;
}

/**
 * `value` as one word of an OpenSSH option (`-o Key=value` or a config file line): `%` doubled
 * (ssh expands `%` tokens in paths), and in double quotes when it holds a space. A value ssh
 * cannot carry (a `"` or a line break) is refused.
 */
export function sshWord(value: string): string {
  if (/["\r\n]/.test(value)) {
    throw new QvmError(`cannot pass ${JSON.stringify(value)} to OpenSSH (a quote or line break)`);
  }
  const escaped = value.replaceAll("%", "%%");
  return /[\s#]/.test(escaped) ? `"${escaped}"` : escaped;
}

/** The host ssh connects to for `target` (a forward on 0.0.0.0 is reached on 127.0.0.1). */
export function sshHost(target: SshTarget): string {
  return target.address === "0.0.0.0" ? "127.0.0.1" : target.address;
}

/** The `-o` options that make ssh and scp trust and reach a VM as `qvm ssh` does. */
function trustOptions(target: SshTarget): string[] {
  return [
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    `UserKnownHostsFile=${sshWord(target.knownHosts)}`,
    "-o",
    "StrictHostKeyChecking=accept-new",
    "-o",
    `HostKeyAlias=${target.alias}`,
    "-o",
    "LogLevel=ERROR",
  ];
}

/** What `sshArgv` adds besides the target. */
export interface SshArgvOptions {
  command?: readonly string[];
  batch?: boolean;
  connectTimeoutS?: number;
  /** The user's own ssh options (`-L 8080:localhost:80`, `-o ...`), placed first so they win. */
  extra?: readonly string[];
}

/**
 * The ssh argv (binary first) for `target`, then `command` (empty: an interactive shell; one
 * word: a shell line; several: those words, each quoted for the guest's shell).
 */
export function sshArgv(target: SshTarget, options: SshArgvOptions = {}): string[] {
  const argv = [
    "ssh",
    ...options.extra ?? [],
    "-p",
    String(target.port),
    "-i",
    target.key.replaceAll("%", "%%"),
    ...trustOptions(target),
  ];
  if (options.batch) argv.push("-o", "BatchMode=yes");
  if (options.connectTimeoutS) argv.push("-o", `ConnectTimeout=${options.connectTimeoutS}`);
  argv.push("-l", target.user, sshHost(target));
  // ssh joins the words into one line for the guest's shell: one word is that line as given,
  // several are quoted so the guest runs exactly those words (`-- sh -c 'exit 3'`).
  const command = options.command ?? [];
  if (command.length === 1) argv.push("--", command[0]);
  else if (command.length > 1) argv.push("--", shellQuote(command));
  return argv;
}

/**
 * True when an SSH server answers on `address:port` within `timeoutMs`: it sends its
 * `SSH-2.0-...` line first. A port QEMU forwards to a guest whose sshd is not up yet accepts the
 * connection and then closes it, or stays silent.
 */
export async function sshServerAnswers(
  address: string,
  port: number,
  timeoutMs: number,
): Promise<boolean> {
  let conn: Deno.TcpConn | undefined;
  let done = false;
  after(timeoutMs, () => {
    if (done) return;
    try {
      conn?.close();
    } catch { /* already closed */ }
  });
  try {
    conn = await Deno.connect({ hostname: address, port, transport: "tcp" });
    const buffer = new Uint8Array(4);
    let got = 0;
    while (got < buffer.length) {
      const n = await conn.read(buffer.subarray(got));
      if (n === null) break;
      got += n;
    }
    return new TextDecoder().decode(buffer.subarray(0, got)) === "SSH-";
  } catch {
    return false;
  } finally {
    done = true;
    try {
      conn?.close();
    } catch { /* closed by the timer */ }
  }
}

/**
 * The scp argv (binary first) copying `sources` to `dest` with `target`'s trust options; modes
 * and times are kept (`-p`). The guest side's paths are given as the user wrote them after
 * `VM:` (relative ones start in the login user's home, as scp reads them).
 */
export function scpArgv(
  target: SshTarget,
  copy: { direction: "in" | "out"; sources: readonly string[]; dest: string; recursive: boolean },
  options: { quiet?: boolean } = {},
): string[] {
  const remote = (path: string) => `${target.user}@${sshHost(target)}:${path}`;
  const argv = ["scp", "-p"];
  if (copy.recursive) argv.push("-r");
  if (options.quiet) argv.push("-q");
  argv.push(
    "-P",
    String(target.port),
    "-i",
    target.key.replaceAll("%", "%%"),
    ...trustOptions(target),
    "-o",
    "BatchMode=yes",
    "--",
  );
  if (copy.direction === "in") {
    argv.push(...copy.sources.map(localScpPath), remote(copy.dest));
  } else {
    argv.push(...copy.sources.map(remote), localScpPath(copy.dest));
  }
  return argv;
}

/** A host path as scp must see it: a relative one with `:` before any `/` gets `./`. */
export function localScpPath(path: string): string {
  const colon = path.indexOf(":");
  if (colon === -1 || path.startsWith("/")) return path;
  const slash = path.indexOf("/");
  return slash !== -1 && slash < colon ? path : `./${path}`;
}

/**
 * An OpenSSH config block for `target` under `Host name`, so `ssh -F FILE name`, `scp`, `rsync
 * -e 'ssh -F FILE'` and editors reach the VM as `qvm ssh` does.
 */
export function sshConfigBlock(name: string, target: SshTarget): string {
  return [
    `Host ${name}`,
    `  HostName ${sshHost(target)}`,
    `  Port ${target.port}`,
    `  User ${target.user}`,
    `  IdentityFile ${sshWord(target.key)}`,
    "  IdentitiesOnly yes",
    `  UserKnownHostsFile ${sshWord(target.knownHosts)}`,
    "  StrictHostKeyChecking accept-new",
    `  HostKeyAlias ${target.alias}`,
    "  LogLevel ERROR",
    "",
  ].join("\n");
}
