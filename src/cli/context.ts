/** What every command receives: resolved folders, output mode, and a lazily opened state store. */
import { databasePath, type Dirs, ensurePrivateDir, StateStore } from "../state/mod.ts";

const encoder = new TextEncoder();

/** The per-run context handed to each command's `run`. */
export class Context {
  readonly dirs: Dirs;
  readonly json: boolean;
  readonly debug: boolean;
  /** The command only reads the database (it still works on a read-only or full data dir). */
  readonly readOnly: boolean;
  #store?: StateStore;

  constructor(options: { dirs: Dirs; json: boolean; debug: boolean; readOnly?: boolean }) {
    this.dirs = options.dirs;
    this.json = options.json;
    this.debug = options.debug;
    this.readOnly = options.readOnly === true;
  }

  /** The state store, opened (and the data dir created, mode 0700) on first use. */
  get store(): StateStore {
    if (!this.#store) {
      ensurePrivateDir(this.dirs.dataDir);
      this.#store = StateStore.open(databasePath(this.dirs.dataDir), {
        readOnly: this.readOnly,
        runtimeDir: this.dirs.runtimeDir,
      });
    }
    return this.#store;
  }

  /** Writes a line (or several) to stdout. */
  out(text: string): void {
    writeOut(encoder.encode(text.endsWith("\n") ? text : `${text}\n`));
  }

  /** Writes `bytes` to stdout as they are. */
  outBytes(bytes: Uint8Array): void {
    writeOut(bytes);
  }

  /** Writes `value` as pretty JSON to stdout. */
  outJson(value: unknown): void {
    this.out(JSON.stringify(value, null, 2));
  }

  /** A warning on stderr; never changes the exit code. */
  warn(message: string): void {
    writeAll(Deno.stderr, encoder.encode(`qvm: warning: ${message}\n`));
  }

  /** A progress or info line on stderr (kept off stdout so scripts can parse it). */
  note(message: string): void {
    writeAll(Deno.stderr, encoder.encode(`${message}\n`));
  }

  /** Closes what the run opened. */
  close(): void {
    this.#store?.close();
  }
}

/** stdout's reader went away (`qvm ... | head`): a normal end for a CLI, so qvm exits 0 quietly. */
export class OutputClosed extends Error {
  override name = "OutputClosed";
}

/** Writes all of `bytes` to stdout; throws OutputClosed once nobody reads it any more. */
export function writeOut(bytes: Uint8Array): void {
  try {
    writeAll(Deno.stdout, bytes);
  } catch (error) {
    if (error instanceof Deno.errors.BrokenPipe) throw new OutputClosed();
    throw error;
  }
}

function writeAll(sink: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += sink.writeSync(bytes.subarray(offset));
}

/** True when stdout is a terminal and colours are allowed (`NO_COLOR` unset). */
export function useColor(): boolean {
  return Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
}
