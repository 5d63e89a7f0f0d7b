/**
 * QMP arguments from the words of `qvm qmp` (pure): a JSON object of arguments, typed `device_add`
 * properties, a key hold time, a screendump's format and absolute path. Key names are `keys.ts`'s.
 */
import { isAbsolute, resolve } from "../path.ts";
import { UsageError } from "../errors.ts";

/** Parses `qmp run`'s JSON-ARGS: a JSON object, else a UsageError with the parser's reason. */
export function parseJsonArgs(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`invalid JSON-ARGS: ${(error as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new UsageError(`invalid JSON-ARGS: must be a JSON object like '{"key": "value"}'`);
  }
  return value as Record<string, unknown>;
}

/**
 * One `device_add` property value from `k=v`: a decimal integer becomes a number and `true` /
 * `false` booleans; anything else (`on`, `0x10`, `007`, paths) stays the string given.
 */
export function propertyValue(text: string): string | number | boolean {
  if (text === "true") return true;
  if (text === "false") return false;
  if (/^-?(0|[1-9]\d*)$/.test(text)) {
    const n = Number(text);
    if (Number.isSafeInteger(n)) return n;
  }
  return text;
}

/**
 * `device_add` properties from `k=v` arguments (see {@linkcode propertyValue}). A missing `=`, an
 * empty or repeated key, or `driver` / `id` (given as positionals) is a UsageError.
 */
export function parseProperties(
  args: readonly string[],
): Record<string, string | number | boolean> {
  const props: Record<string, string | number | boolean> = {};
  for (const arg of args) {
    const eq = arg.indexOf("=");
    if (eq <= 0) throw new UsageError(`invalid property '${arg}': use KEY=VALUE, e.g. bus=pci.0`);
    const key = arg.slice(0, eq);
    if (key === "driver" || key === "id") {
      throw new UsageError(`property '${key}' is given as the ${key.toUpperCase()} argument`);
    }
    if (Object.hasOwn(props, key)) throw new UsageError(`property '${key}' given twice`);
    props[key] = propertyValue(arg.slice(eq + 1));
  }
  return props;
}

/** The longest `--hold-time` qvm passes to QEMU: one minute. */
const MAX_HOLD_MS = 60_000;

/** Parses `--hold-time MS` (a whole number of milliseconds, 0 to 60000). */
export function parseHoldTime(value: unknown, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== "string" || !/^\d+$/.test(value.trim()) || !(n <= MAX_HOLD_MS)) {
    throw new UsageError(
      `invalid --hold-time '${value}': give whole milliseconds from 0 to ${MAX_HOLD_MS}`,
    );
  }
  return n;
}

/** A screendump's format and absolute path: `--format` if given, else png for `.png`, else ppm. */
export function screendumpTarget(
  file: string,
  options: { format?: unknown; cwd?: string } = {},
): { file: string; format: "png" | "ppm" } {
  const path = isAbsolute(file) ? file : resolve(options.cwd ?? Deno.cwd(), file);
  if (options.format === undefined) {
    return { file: path, format: /\.png$/i.test(file) ? "png" : "ppm" };
  }
  if (options.format !== "png" && options.format !== "ppm") {
    throw new UsageError(`invalid --format '${options.format}': use png or ppm`);
  }
  return { file: path, format: options.format };
}
