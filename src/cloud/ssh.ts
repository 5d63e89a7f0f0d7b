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
 * The ssh argv (binary first) for `target`, then `command` (empty: an interactive shell; one
 * word: a shell line; several: those words, each quoted for the guest's shell).
 */
export function sshArgv(
  target: SshTarget,
  options: { command?: readonly string[]; batch?: boolean; connectTimeoutS?: number } = {},
): string[] {
  const host = target.address === "0.0.0.0" ? "127.0.0.1" : target.address;
  const argv = [
    "ssh",
    "-p",
    String(target.port),
    "-i",
    target.key,
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    `UserKnownHostsFile=${target.knownHosts}`,
    "-o",
    "StrictHostKeyChecking=accept-new",
    "-o",
    `HostKeyAlias=${target.alias}`,
    "-o",
    "LogLevel=ERROR",
  ];
  if (options.batch) argv.push("-o", "BatchMode=yes");
  if (options.connectTimeoutS) argv.push("-o", `ConnectTimeout=${options.connectTimeoutS}`);
  argv.push("-l", target.user, host);
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
