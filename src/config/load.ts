/**
 * Reading one YAML config file: size limit, YAML errors as `FILE:LINE:COL: message`, per-file checks,
 * and relative paths resolved against the file's folder. The `yaml` package is loaded lazily, so
 * only commands that read YAML pay its start-up cost.
 */

import { dirname, resolve } from "../path.ts";
import { NotFoundError, PermissionError, QvmError, UsageError } from "../errors.ts";
import {
  checkCommandKeys,
  checkSingletons,
  checkStorageNames,
  settleShorthands,
} from "./_checks.ts";
import { isMap, kindOf } from "./_util.ts";
import { resolveConfigPaths } from "./paths.ts";

/** The largest config file qvm reads: 1 MiB (and the largest domain XML `import-libvirt` reads). */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** Options of `loadConfigFile`; `warn` receives YAML warnings as `FILE:LINE:COL: message`. */
export interface LoadOptions {
  /** Called once per non-fatal finding, with a one-line message. */
  warn?: (message: string) => void;
}

function osReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // Deno appends the operation and path ("...: open '/x'"); the caller already names the file.
  return message.replace(/: [a-z]+ '.*'$/s, "").split("\n")[0];
}

/** What `readSmallText` reads, for its messages, and whether only a regular file will do. */
export interface SmallTextOptions {
  /** What the file is, as messages say it: `config`, `domain XML`. */
  what: string;
  /**
   * Refuse, at once, anything but a regular file (a FIFO, a device, a socket): a FIFO would
   * block the read and a device (`/dev/zero`) never ends.
   */
  regularOnly?: boolean;
}

function fileError(path: string, error: unknown, what: string): QvmError {
  if (error instanceof Deno.errors.NotFound) {
    return new NotFoundError(`${path}: no such ${what} file`, { cause: error });
  }
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return new PermissionError(`${path}: cannot read ${what}: ${osReason(error)}`, {
      cause: error,
    });
  }
  return new UsageError(`${path}: cannot read ${what}: ${osReason(error)}`, { cause: error });
}

function tooLarge(path: string, what: string): UsageError {
  return new UsageError(`${path}: ${what} is larger than 1 MiB`);
}

function kindOfFile(info: Deno.FileInfo): string {
  if (info.isFifo) return "a FIFO";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return "not a regular file";
}

/**
 * Reads a small UTF-8 text file: at most 1 MiB (+1 byte to notice more), even from a pipe or a
 * file that grows. Errors are one line naming the file: NotFoundError, PermissionError (exit 4),
 * else UsageError (exit 3).
 */
export async function readSmallText(
  path: string,
  options: SmallTextOptions = { what: "config" },
): Promise<string> {
  const { what } = options;
  let file: Deno.FsFile | undefined;
  let bytes: Uint8Array;
  try {
    const info = await Deno.stat(path);
    if (info.isDirectory) throw new UsageError(`${path}: is a folder, not a ${what} file`);
    if (options.regularOnly && !info.isFile) {
      throw new UsageError(`${path}: is ${kindOfFile(info)}, not a ${what} file`);
    }
    if (info.size > MAX_CONFIG_BYTES) throw tooLarge(path, what);
    file = await Deno.open(path, { read: true });
    if (options.regularOnly && !(await file.stat()).isFile) {
      throw new UsageError(`${path}: changed into something other than a ${what} file`);
    }
    const buffer = new Uint8Array(MAX_CONFIG_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const n = await file.read(buffer.subarray(length));
      if (n === null) break;
      length += n;
    }
    if (length > MAX_CONFIG_BYTES) throw tooLarge(path, what);
    bytes = buffer.subarray(0, length);
  } catch (error) {
    if (error instanceof QvmError) throw error;
    throw fileError(path, error, what);
  } finally {
    file?.close();
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (error) {
    throw new UsageError(`${path}: ${what} is not valid UTF-8 text`, { cause: error });
  }
}

function firstLine(message: string): string {
  return message.split("\n")[0].trim();
}

/** Loads the `yaml` package on first use; a broken install is a plain failure (exit 1). */
async function importYaml(): Promise<typeof import("yaml")> {
  try {
    return await import("yaml");
  } catch (error) {
    const reason = firstLine(error instanceof Error ? error.message : String(error));
    throw new QvmError(`cannot load the yaml package: ${reason}`, { cause: error });
  }
}

/**
 * `0755` is an octal number in YAML 1.1, which maqet's parser reads, and a decimal 755 in YAML
 * 1.2. It is kept as written, `0755`, which QEMU reads as the octal mode it is (`dmode=0755`,
 * `fmode=0644`), as maqet passes it on; never 755, nor the 493 a number would print.
 */
const LEADING_ZERO_OCTAL = {
  identify: () => false,
  default: true,
  tag: "tag:yaml.org,2002:int",
  test: /^[-+]?0[0-7]+$/,
  resolve: (text: string) => text,
};

async function parseYaml(path: string, source: string, options?: LoadOptions): Promise<unknown> {
  const { LineCounter, parseDocument } = await importYaml();
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, {
    lineCounter,
    prettyErrors: false,
    uniqueKeys: true,
    // `<<: *anchor` merge keys, which maqet's YAML 1.1 parser applies.
    merge: true,
    customTags: (tags) => [LEADING_ZERO_OCTAL, ...tags],
  });
  const where = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `${path}:${line}:${col}`;
  };
  if (doc.errors.length > 0) {
    const [first, ...more] = doc.errors;
    const detail = more.map((e) => `${where(e.pos[0])}: ${firstLine(e.message)}`).join("\n");
    throw new UsageError(`${where(first.pos[0])}: ${firstLine(first.message)}`, {
      detail: detail === "" ? undefined : detail,
    });
  }
  for (const warning of doc.warnings) {
    options?.warn?.(`${where(warning.pos[0])}: ${firstLine(warning.message)}`);
  }
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(`${path}: ${firstLine(message)}`, { cause: error });
  }
}

/**
 * Reads a small YAML (or JSON) data file that is not a VM config (e.g. an image catalog, `what`
 * in messages): a regular file of at most 1 MiB of UTF-8, errors as `FILE:LINE:COL: message`.
 */
export async function readDataFile(
  path: string,
  options: { what: string } & LoadOptions,
): Promise<unknown> {
  const text = await readSmallText(path, { what: options.what, regularOnly: true });
  return await parseYaml(path, text, options);
}

/**
 * Reads one YAML config file into a raw map (not yet validated): at most 1 MiB, top level a map
 * (an empty file is an empty map), no qvm command as a key, no duplicate storage names or singleton
 * arguments, a key and its option in `arguments` settled (the later wins, with a warning), relative
 * paths resolved against the file's folder. Errors name the file (and line and column for YAML).
 */
export async function loadConfigFile(
  path: string,
  options?: LoadOptions,
): Promise<Record<string, unknown>> {
  const source = await readSmallText(path);
  const value = await parseYaml(path, source, options);
  if (value === null || value === undefined) return {};
  if (!isMap(value)) {
    throw new UsageError(
      `${path}: the top level must be a map of config keys, not ${kindOf(value)}`,
    );
  }
  let settled: Record<string, unknown>;
  try {
    checkCommandKeys(value);
    checkStorageNames(value);
    checkSingletons(value);
    settled = settleShorthands(value, (message) => options?.warn?.(`${path}: ${message}`));
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(`${path}: ${error.message}`);
    throw error;
  }
  resolveConfigPaths(settled, dirname(resolve(path)));
  return settled;
}
