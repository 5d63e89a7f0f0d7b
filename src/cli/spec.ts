/**
 * The declarative command table's types and the pure argument parser that reads it (help,
 * `_help.ts`, and completions read the same table). The parser is our own, a few dozen lines:
 * `node:util` would add its whole module's start-up cost to every command.
 */
import { didYouMean, UsageError } from "../errors.ts";

/** What a value completes to in shell completions. */
export type Completion = "vm" | "file" | "dir" | readonly string[];

/** One `--flag` of a command. */
export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  /** Placeholder shown in help, e.g. `SIZE`. */
  value?: string;
  description: string;
  complete?: Completion;
}

/** One positional argument of a command. */
export interface PositionalSpec {
  name: string;
  description: string;
  optional?: boolean;
  variadic?: boolean;
  complete?: Completion;
}

/** A command (or subcommand) as help, parsing and completions see it. */
export interface CommandSpec {
  name: string;
  summary: string;
  description?: string;
  positionals: readonly PositionalSpec[];
  options: Readonly<Record<string, OptionSpec>>;
  examples?: readonly string[];
  /** `qvm qmp run ...`: the first positional picks one of these. */
  subcommands?: readonly CommandSpec[];
}

/** Parsed arguments of one command invocation. */
export interface ParsedArgs {
  /** Subcommand path below the command, e.g. `["run"]` for `qvm qmp run`. */
  subcommand?: string;
  positionals: string[];
  values: Record<string, string | boolean | string[] | undefined>;
}

/** Flags every command accepts, before or after the command name. */
export const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  "data-dir": {
    type: "string",
    value: "DIR",
    description: "state and disks (default $QVM_DATA_DIR, $XDG_DATA_HOME/qvm, ~/.local/share/qvm)",
    complete: "dir",
  },
  "runtime-dir": {
    type: "string",
    value: "DIR",
    description: "sockets, pid files, locks (default $QVM_RUNTIME_DIR, $XDG_RUNTIME_DIR/qvm)",
    complete: "dir",
  },
  json: { type: "boolean", description: "machine-readable output with stable keys" },
  debug: { type: "boolean", description: "show stack traces and QEMU command lines" },
  help: { type: "boolean", short: "h", description: "show help" },
};

/** What `tokenize` needs to know about the flags one invocation accepts. */
interface FlagTable {
  long: Map<string, OptionSpec>;
  /** Short letter → long name. */
  short: Map<string, string>;
}

function flagTable(options: Readonly<Record<string, OptionSpec>>): FlagTable {
  const table: FlagTable = { long: new Map(), short: new Map() };
  for (const name in options) {
    const spec = options[name];
    table.long.set(name, spec);
    if (spec.short) table.short.set(spec.short, name);
  }
  return table;
}

/** True for a word that would be read as a flag, so it cannot silently be a flag's value. */
function looksLikeFlag(word: string): boolean {
  return word.length > 1 && word[0] === "-";
}

/**
 * Splits `args` into flag values and positionals, strictly: `--flag=value`, `--flag value`,
 * `-f`, grouped `-fy`, `-xVALUE`; everything after `--` is positional; an unknown flag, a value
 * given to a boolean flag, or a missing value is a UsageError naming `command`. A repeated flag
 * keeps its last value (all of them when the flag is `multiple`).
 */
function tokenize(
  args: readonly string[],
  options: { flags: FlagTable; command: string },
): { values: ParsedArgs["values"]; positionals: string[] } {
  const { flags, command } = options;
  const values: ParsedArgs["values"] = Object.create(null);
  const positionals: string[] = [];
  const set = (name: string, value: string | boolean) => {
    if (flags.long.get(name)!.multiple) {
      const list = values[name];
      values[name] = Array.isArray(list) ? [...list, String(value)] : [String(value)];
    } else {
      values[name] = value;
    }
  };
  /** The value of string flag `shown` from `args[i + 1]`; returns the index consumed. */
  const takeNext = (name: string, shown: string, i: number): number => {
    const next = args[i + 1];
    if (next === undefined) throw new UsageError(`${command}: option '${shown}' needs a value`);
    if (looksLikeFlag(next)) {
      throw new UsageError(
        `${command}: option '${shown}' needs a value (write ${shown}=${next} for a value ` +
          "that starts with '-')",
      );
    }
    set(name, next);
    return i + 1;
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      for (let j = i + 1; j < args.length; j++) positionals.push(args[j]);
      break;
    }
    if (arg.length < 2 || arg[0] !== "-") {
      positionals.push(arg);
    } else if (arg[1] === "-") {
      const eq = arg.indexOf("=");
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      const shown = name ? `--${name}` : arg;
      const spec = flags.long.get(name);
      if (!spec) {
        const hint = name ? didYouMean(name, flags.long.keys(), (c) => `'--${c}'`) : "";
        throw new UsageError(`${command}: unknown option '${shown}'${hint}`);
      }
      if (spec.type === "boolean") {
        if (eq !== -1) throw new UsageError(`${command}: option '${shown}' takes no value`);
        set(name, true);
      } else if (eq !== -1) {
        set(name, arg.slice(eq + 1));
      } else {
        i = takeNext(name, shown, i);
      }
    } else {
      for (let k = 1; k < arg.length; k++) {
        const name = flags.short.get(arg[k]);
        if (name === undefined) throw new UsageError(`${command}: unknown option '-${arg[k]}'`);
        if (flags.long.get(name)!.type === "boolean") {
          set(name, true);
        } else if (k + 1 < arg.length) {
          set(name, arg.slice(k + 1));
          break;
        } else {
          i = takeNext(name, `--${name}`, i);
        }
      }
    }
  }
  return { values, positionals };
}

/** Where the subcommand is in `args`: the first word that is neither a flag nor a flag's value. */
function subcommandIndex(spec: CommandSpec, args: readonly string[]): number {
  const takesValue = (flag: string): boolean => {
    const name = flag.replace(/^--?/, "");
    const all = [GLOBAL_OPTIONS, spec.options, ...(spec.subcommands ?? []).map((s) => s.options)];
    return all.some((options) =>
      Object.entries(options ?? {}).some(([long, o]) =>
        o.type === "string" && (long === name || (o.short !== undefined && o.short === name))
      )
    );
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") return -1;
    if (!arg.startsWith("-") || arg === "-") return i;
    if (!arg.includes("=") && takesValue(arg)) i++;
  }
  return -1;
}

/** Picks the subcommand spec named by the first positional, if the command has subcommands. */
export function selectSubcommand(
  spec: CommandSpec,
  args: readonly string[],
): { spec: CommandSpec; rest: string[]; path: string } {
  if (!spec.subcommands) return { spec, rest: [...args], path: spec.name };
  const index = subcommandIndex(spec, args);
  if (index === -1) {
    if (args.includes("--help") || args.includes("-h")) {
      return { spec, rest: [...args], path: spec.name };
    }
    throw new UsageError(
      `${spec.name}: missing subcommand (${spec.subcommands.map((s) => s.name).join(", ")})`,
    );
  }
  const sub = spec.subcommands.find((s) => s.name === args[index]);
  if (!sub) {
    const names = spec.subcommands.map((s) => s.name);
    throw new UsageError(
      `${spec.name}: unknown subcommand '${args[index]}' (${names.join(", ")})` +
        didYouMean(args[index], names),
    );
  }
  const rest = [...args.slice(0, index), ...args.slice(index + 1)];
  return { spec: sub, rest, path: `${spec.name} ${sub.name}` };
}

/**
 * Parses a command's arguments against its spec (plus the global flags): unknown flags, missing
 * and surplus positionals are UsageErrors naming the command.
 */
export function parseCommandArgs(spec: CommandSpec, args: readonly string[]): ParsedArgs {
  const chosen = selectSubcommand(spec, args);
  const { values, positionals } = tokenize(chosen.rest, {
    flags: flagTable({ ...GLOBAL_OPTIONS, ...chosen.spec.options }),
    command: `qvm ${chosen.path}`,
  });
  if (!values.help && !chosen.spec.subcommands) {
    const required = chosen.spec.positionals.filter((p) => !p.optional);
    if (positionals.length < required.length) {
      const missing = required[positionals.length];
      throw new UsageError(`qvm ${chosen.path}: missing argument ${missing.name}`);
    }
    const variadic = chosen.spec.positionals.some((p) => p.variadic);
    if (!variadic && positionals.length > chosen.spec.positionals.length) {
      const extra = positionals[chosen.spec.positionals.length];
      throw new UsageError(`qvm ${chosen.path}: unexpected argument '${extra}'`);
    }
  }
  return {
    subcommand: chosen.spec === spec ? undefined : chosen.spec.name,
    positionals,
    values,
  };
}
