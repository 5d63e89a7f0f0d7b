/** Test helpers: run the real qvm CLI in a subprocess against a private data and runtime dir. */
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";

/** The qvm entry point the tests run (main.ts at the repository root). */
export const QVM_MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** What one qvm invocation did. */
export interface QvmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A throwaway qvm home: data dir, runtime dir, and a way to run qvm against them. */
export class QvmEnv {
  readonly root: string;
  readonly dataDir: string;
  readonly runtimeDir: string;

  private constructor(root: string) {
    this.root = root;
    this.dataDir = join(root, "data");
    this.runtimeDir = join(root, "run");
  }

  /** Makes the temp folders (short paths: unix sockets allow 107 bytes). */
  static async create(): Promise<QvmEnv> {
    return new QvmEnv(await Deno.makeTempDir({ dir: "/tmp", prefix: "qvmt-" }));
  }

  /** `qvm ARGS...` as a command against this env's folders, for tests that spawn it themselves. */
  command(
    args: string[],
    options: {
      env?: Record<string, string>;
      stdin?: "null" | "piped";
      stdio?: Deno.CommandOptions["stdout"];
      cwd?: string;
    } = {},
  ): Deno.Command {
    return new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", QVM_MAIN, ...args],
      cwd: options.cwd,
      env: {
        QVM_DATA_DIR: this.dataDir,
        QVM_RUNTIME_DIR: this.runtimeDir,
        NO_COLOR: "1",
        ...options.env,
      },
      stdin: options.stdin ?? "null",
      stdout: options.stdio ?? "piped",
      stderr: options.stdio ?? "piped",
    });
  }

  /** Runs `qvm ARGS...` (from folder `cwd` when given); `stdin` text is piped in when given. */
  async run(
    args: string[],
    options: { stdin?: string; env?: Record<string, string>; cwd?: string } = {},
  ): Promise<QvmResult> {
    const command = this.command(args, {
      env: options.env,
      cwd: options.cwd,
      stdin: options.stdin === undefined ? "null" : "piped",
    });
    const child = command.spawn();
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(options.stdin));
      await writer.close();
    }
    const out = await child.output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  }

  /** Runs qvm and fails the test (with its stderr) unless it exits 0; returns stdout. */
  async ok(args: string[]): Promise<string> {
    const result = await this.run(args);
    if (result.code !== 0) {
      throw new Error(`qvm ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
    }
    return result.stdout;
  }

  /** `qvm status VM --json`, parsed. */
  async status(vm: string) {
    return JSON.parse(await this.ok(["status", vm, "--json"]));
  }

  /** Every row of the state database as JSON text (empty string if there is no database). */
  snapshot(): string {
    const path = join(this.dataDir, "qvm.db");
    try {
      Deno.statSync(path);
    } catch {
      return "";
    }
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      return JSON.stringify(db.prepare("SELECT * FROM vm_instances ORDER BY id").all());
    } finally {
      db.close();
    }
  }

  /** Writes a file under the env's root and returns its path. */
  async file(name: string, text: string): Promise<string> {
    const path = join(this.root, name);
    await Deno.mkdir(join(path, ".."), { recursive: true });
    await Deno.writeTextFile(path, text);
    return path;
  }

  /** Kills every QEMU started under this env, then removes everything (call in `finally`). */
  async cleanup(): Promise<void> {
    for (const pid of pidsMentioning(this.root)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* already gone */ }
    }
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }
}

/** Pids of live QEMU processes whose command line mentions `needle` (e.g. a test's temp root). */
export function pidsMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (cmdline.includes(needle) && cmdline.includes("qemu-system")) {
        pids.push(Number(entry.name));
      }
    } catch { /* gone */ }
  }
  return pids;
}

/** Runs `fn` with a fresh env and always cleans it up, killing any QEMU it started. */
export async function withEnv(fn: (env: QvmEnv) => Promise<void>): Promise<void> {
  const env = await QvmEnv.create();
  try {
    await fn(env);
  } finally {
    await env.cleanup();
  }
}

/** True if something (file, socket, link) is at `path`. */
export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
