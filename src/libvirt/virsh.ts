/**
 * Running `virsh -c URI ...` (libvirt-clients) to define and start domains, locally or on another
 * host (`qemu+ssh://`). Each failure is one QvmError line (exit 1) with libvirt's own words.
 */
import { QvmError, TimeoutError } from "../errors.ts";

/** How long one virsh call may take (an SSH connection that hangs must not hang qvm). */
const VIRSH_TIMEOUT_MS = 120_000;

/** The absolute path of `virsh` on PATH, or undefined. */
export function findVirsh(): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    try {
      if (Deno.statSync(`${dir}/virsh`).isFile) return `${dir}/virsh`;
    } catch { /* not here */ }
  }
  return undefined;
}

/** virsh's error lines as one line (`error: a\nerror: b` → `a: b`). */
export function virshError(stderr: string): string {
  const lines = stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const errors = lines.filter((l) => l.startsWith("error:")).map((l) => l.slice(6).trim());
  const picked = errors.length > 0 ? errors : lines;
  return picked.join(": ").replace(/\s+/g, " ") || "virsh failed without a message";
}

interface VirshResult {
  ok: boolean;
  stdout: string;
  error: string;
}

async function virsh(uri: string, args: string[]): Promise<VirshResult> {
  const binary = findVirsh();
  if (binary === undefined) {
    throw new QvmError(
      "virsh not found: install libvirt-clients (e.g. apt-get install libvirt-clients)",
    );
  }
  const command = new Deno.Command(binary, {
    args: ["-q", "-c", uri, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(VIRSH_TIMEOUT_MS),
  });
  let out: Deno.CommandOutput;
  try {
    out = await command.output();
  } catch (err) {
    if ((err as Error).name === "AbortError" || (err as Error).name === "TimeoutError") {
      throw new TimeoutError(`virsh -c ${uri} ${args[0]} did not answer within 120 s`);
    }
    throw new QvmError(`cannot run virsh: ${(err as Error).message}`);
  }
  const decoder = new TextDecoder();
  return {
    ok: out.success,
    stdout: decoder.decode(out.stdout),
    error: virshError(decoder.decode(out.stderr)),
  };
}

/**
 * Defines domain `name` from `xml` at `uri`. Refuses (exit 1) when libvirt cannot be reached there,
 * when a domain of that name is already defined there (define would silently replace it), or when
 * libvirt rejects the XML.
 */
export async function defineDomain(options: { uri: string; name: string; xml: string }) {
  const { uri, name } = options;
  const listed = await virsh(uri, ["list", "--all", "--name"]);
  if (!listed.ok) throw new QvmError(`cannot reach libvirt at ${uri}: ${listed.error}`);
  if (listed.stdout.split("\n").map((l) => l.trim()).includes(name)) {
    throw new QvmError(`a domain named '${name}' is already defined at ${uri}`);
  }
  const file = await Deno.makeTempFile({ prefix: "qvm-domain-", suffix: ".xml" });
  try {
    await Deno.writeTextFile(file, options.xml);
    const defined = await virsh(uri, ["define", file]);
    if (!defined.ok) throw new QvmError(`libvirt at ${uri} refused '${name}': ${defined.error}`);
  } finally {
    await Deno.remove(file).catch(() => {});
  }
}

/** Starts the defined domain `name` at `uri`. */
export async function startDomain(options: { uri: string; name: string }): Promise<void> {
  const started = await virsh(options.uri, ["start", options.name]);
  if (!started.ok) {
    throw new QvmError(
      `libvirt at ${options.uri} could not start '${options.name}' (it stays defined there): ${started.error}`,
    );
  }
}
