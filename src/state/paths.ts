/** Where qvm keeps things: the data dir (database, disks, logs) and the runtime dir (sockets, pids, locks). */
import { join } from "node:path";
import { PermissionError, QvmError } from "../errors.ts";

/** The resolved folders for one run of qvm. */
export interface Dirs {
  dataDir: string;
  runtimeDir: string;
}

/** The database file inside a data dir. */
export function databasePath(dataDir: string): string {
  return join(dataDir, "qvm.db");
}

/**
 * Data dir: flag, else `$QVM_DATA_DIR`, else `$XDG_DATA_HOME/qvm`, else `~/.local/share/qvm`.
 * Runtime dir: flag, else `$QVM_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/qvm`, else `/tmp/qvm-<uid>`.
 */
export function resolveDirs(flags: { dataDir?: string; runtimeDir?: string }): Dirs {
  const env = (name: string) => Deno.env.get(name) || undefined;
  const home = env("HOME") ?? "/root";
  const dataDir = flags.dataDir ?? env("QVM_DATA_DIR") ??
    (env("XDG_DATA_HOME") ? join(env("XDG_DATA_HOME")!, "qvm") : join(home, ".local/share/qvm"));
  const runtimeDir = flags.runtimeDir ?? env("QVM_RUNTIME_DIR") ??
    (env("XDG_RUNTIME_DIR") ? join(env("XDG_RUNTIME_DIR")!, "qvm") : `/tmp/qvm-${Deno.uid()}`);
  return { dataDir, runtimeDir };
}

/** Creates `dir` (and parents) with mode 0700 if missing; refuses one owned by someone else. */
export function ensurePrivateDir(dir: string): void {
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const info = Deno.statSync(dir);
    if (!info.isDirectory) throw new QvmError(`${dir} exists and is not a folder`);
    if (info.uid !== null && info.uid !== Deno.uid()) {
      throw new PermissionError(`${dir} belongs to another user (uid ${info.uid})`);
    }
  } catch (err) {
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new PermissionError(`cannot create ${dir}: permission denied`);
    }
    throw err;
  }
}
