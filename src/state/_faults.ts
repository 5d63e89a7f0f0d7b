/**
 * SQLite failures as one clear line each: a full or failing disk and a read-only data dir become
 * a StateWriteError, a damaged file a StateDamagedError that points to `qvm doctor`. node:sqlite
 * reports only SQLite's message, so the kind is read from it; the cause of an I/O error is probed
 * on the data dir itself (only on this failure path).
 */
import { QvmError, StateDamagedError, StateWriteError } from "../errors.ts";

/** What kind of SQLite failure an error is; undefined for anything else. */
export type Fault = "full" | "io" | "readonly" | "cantopen" | "corrupt" | "busy";

const FAULTS: readonly [RegExp, Fault][] = [
  [/database or disk is full/, "full"],
  [/disk I\/O error/, "io"],
  [/attempt to write a readonly database/, "readonly"],
  [/unable to open database file/, "cantopen"],
  [/database disk image is malformed|file is not a database/, "corrupt"],
  [/database is locked|database table is locked/, "busy"],
];

/** The kind of SQLite failure `err` is (by SQLite's message), or undefined. */
export function faultOf(err: unknown): Fault | undefined {
  if (!(err instanceof Error) || err instanceof QvmError) return undefined;
  return FAULTS.find(([pattern]) => pattern.test(err.message))?.[1];
}

/** Why a folder cannot take writes: no space, read-only file system, or no permission. */
export type WriteBlock = "full" | "readonly" | "permission";

function blockOf(err: unknown): WriteBlock | undefined {
  if (err instanceof Deno.errors.PermissionDenied) return "permission";
  const message = err instanceof Error ? err.message : "";
  const code = (err as { code?: string })?.code;
  if (code === "ENOSPC" || /os error 28\b/.test(message)) return "full";
  if (code === "EDQUOT" || /os error 122\b/.test(message)) return "full";
  if (code === "EROFS" || /os error 30\b/.test(message)) return "readonly";
  if (code === "EACCES" || /os error 13\b/.test(message)) return "permission";
  return undefined;
}

const PROBE_BYTES = new Uint8Array(16 * 1024);

/**
 * Finds out why `dbPath` and its folder cannot be written, by trying: opening the database for
 * writing, then writing a small file next to it (removed again). Undefined if both work.
 */
export function probeWrite(dbPath: string): WriteBlock | undefined {
  try {
    Deno.openSync(dbPath, { read: true, write: true }).close();
  } catch (err) {
    const block = blockOf(err);
    if (block) return block;
  }
  const dir = folderOf(dbPath);
  let probe: string | undefined;
  try {
    probe = Deno.makeTempFileSync({ dir, prefix: ".qvm-space-" });
    Deno.writeFileSync(probe, PROBE_BYTES);
    return undefined;
  } catch (err) {
    return blockOf(err);
  } finally {
    if (probe) {
      try {
        Deno.removeSync(probe);
      } catch { /* nothing to remove */ }
    }
  }
}

/** The folder a file is in (no node:path on this path). */
export function folderOf(path: string): string {
  const at = path.lastIndexOf("/");
  return at > 0 ? path.slice(0, at) : at === 0 ? "/" : ".";
}

/** The one-line error for a data dir that cannot take writes. */
export function writeBlockedError(
  dbPath: string,
  block: WriteBlock,
  options: { cause?: unknown } = {},
): StateWriteError {
  const cause = options.cause;
  const dir = folderOf(dbPath);
  if (block === "full") {
    return new StateWriteError(
      `no space left on the data dir ${dir}: could not write the state database ${dbPath} ` +
        "(it is unchanged; free some space, then run the command again)",
      { cause },
    );
  }
  const why = block === "readonly" ? "is on a read-only file system" : "is not writable";
  return new StateWriteError(
    `the data dir ${dir} ${why}: cannot write the state database ${dbPath} ` +
      "(qvm can show VMs but not change them)",
    { cause, permission: true },
  );
}

/**
 * `err` as the error a user should see: SQLite's full, I/O, read-only and corruption failures
 * become one line naming the database and what to do; anything else is returned as it is.
 */
export function translateFault(err: unknown, dbPath: string): unknown {
  const fault = faultOf(err);
  if (fault === undefined) return err;
  switch (fault) {
    case "full":
      return writeBlockedError(dbPath, probeWrite(dbPath) ?? "full", { cause: err });
    case "io":
    case "readonly":
    case "cantopen": {
      const block = probeWrite(dbPath);
      if (block) return writeBlockedError(dbPath, block, { cause: err });
      if (fault === "io") {
        return new StateWriteError(
          `I/O error on the state database ${dbPath} (the disk under ${folderOf(dbPath)} may be ` +
            "failing): nothing was changed; 'qvm doctor' checks the database",
          { cause: err },
        );
      }
      return new QvmError(`cannot open the state database ${dbPath}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    case "corrupt":
      return new StateDamagedError(
        `the state database ${dbPath} is damaged (${(err as Error).message}): ` +
          "run 'qvm doctor' for the way out",
        { cause: err },
      );
    case "busy":
      return new QvmError(
        `the state database ${dbPath} stayed locked by another qvm command; try again`,
        { cause: err },
      );
  }
}

/** Why the database at `dbPath` cannot be written now (no space, read-only), or undefined. */
export function probeDatabaseWrite(dbPath: string): StateWriteError | undefined {
  const block = probeWrite(dbPath);
  return block ? writeBlockedError(dbPath, block) : undefined;
}
