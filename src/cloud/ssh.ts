/**
 * qvm's own SSH identity and the OpenSSH command line `qvm ssh` runs: one ed25519 key pair in
 * the data dir (made with ssh-keygen on first need, private key 0600), and a known_hosts file per
 * VM, keyed by a stable alias so a new `auto` port does not look like a new host.
 */
import { QvmError } from "../errors.ts";
import { shellQuote } from "../qemu/launch.ts";
import { ensurePrivateDir } from "../state/mod.ts";
import { after } from "../timers.ts";

/** The key pair's paths under `dataDir`. */
export function keyPaths(dataDir: string): { private: string; public: string } {
  return { private: `${dataDir}/ssh/id_ed25519`, public: `${dataDir}/ssh/id_ed25519.pub` };
}

/** Makes qvm's key pair if it is not there yet; returns the public key line. */
export async function ensureKey(dataDir: string): Promise<string> {
  const paths = keyPaths(dataDir);
  try {
    return (await Deno.readTextFile(paths.public)).trim();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  ensurePrivateDir(`${dataDir}/ssh`, { within: dataDir });
  await Deno.remove(paths.private).catch(() => {});
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command("ssh-keygen", {
      args: ["-q", "-t", "ed25519", "-N", "", "-C", "qvm", "-f", paths.private],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new QvmError("ssh-keygen not found: install openssh-client");
    }
    throw error;
  }
  if (!result.success) {
    const message = new TextDecoder().decode(result.stderr).trim().split("\n")[0];
    throw new QvmError(`ssh-keygen failed: ${message}`);
  }
  await Deno.chmod(paths.private, 0o600);
  return (await Deno.readTextFile(paths.public)).trim();
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
