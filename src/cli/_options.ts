/**
 * Options several commands share, each written once with one help text: the VMs a bulk command
 * works on, `--timeout` (and the one parser of durations, `parseTimeout`), `--wait-for`, `--quiet`.
 */
import type { OptionSpec, PositionalSpec } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { MAX_WAIT_S } from "../vm/env.ts";
import { parseWaitFor, type WaitFor } from "../vm/ready.ts";

/** The VMs of a command that works on one or several (`--all` says which when none are named). */
export const vmsPositional: PositionalSpec = {
  name: "VM",
  description: "ids or names",
  optional: true,
  variadic: true,
  complete: "vm",
};

/** `--quiet`: no progress line. */
export const quietOption: OptionSpec = {
  type: "boolean",
  short: "q",
  description: "no progress line on a terminal",
};

/** `--force` of `stop` and `restart`. */
export const forceKillOption: OptionSpec = {
  type: "boolean",
  short: "f",
  description: "SIGKILL at once instead of ACPI",
};

/** `--timeout S` (or another duration), in seconds; `what` says what the seconds are for. */
export function timeoutOption(defaultS: number, what = "to wait"): OptionSpec {
  return { type: "string", value: "S", description: `seconds ${what} (default ${defaultS})` };
}

/** What `--wait-for` accepts, each with what it waits for. */
const WAIT_FOR_HELP: readonly [string, string?][] = [
  ["process"],
  ["qmp"],
  ["serial:TEXT", "text on the serial console"],
  ["ssh", "SSH runs a command"],
  ["agent", "the guest agent answers"],
];

/** `--wait-for WHAT` of `start`, `restart` and `launch`, whose default is `fallback`. */
export function waitForOption(fallback: "qmp" | "ssh"): OptionSpec {
  const items = WAIT_FOR_HELP.map(([name, what]) => {
    const notes = [name === fallback ? "default" : undefined, what].filter(Boolean);
    return notes.length > 0 ? `${name} (${notes.join("; ")})` : name;
  });
  return {
    type: "string",
    value: "WHAT",
    description: `${items.slice(0, -1).join(", ")} or ${items.at(-1)}`,
    complete: ["process", "qmp", "serial:", "ssh", "agent"],
  };
}

/** Parses `--wait-for` (`fallback` when not given); a value it does not know is a UsageError. */
export function parseWaitForOption(value: unknown, fallback: "qmp" | "ssh"): WaitFor {
  const given = (value as string | undefined) ?? fallback;
  const waitFor = parseWaitFor(given);
  if (!waitFor) {
    throw new UsageError(
      `invalid --wait-for '${given}': use process, qmp, serial:TEXT, ssh or agent`,
    );
  }
  return waitFor;
}

/**
 * Parses `--timeout S` (or the duration option `flag`): seconds, from 0.1 to one day (a longer
 * wait overflows timers).
 */
export function parseTimeout(value: unknown, fallback: number, flag = "--timeout"): number {
  if (value === undefined) return fallback;
  const n = typeof value === "string" && /^\s*\d*\.?\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!(n >= 0.1 && n <= MAX_WAIT_S)) {
    throw new UsageError(
      `invalid ${flag} '${value}': give seconds from 0.1 to ${MAX_WAIT_S}, e.g. 30`,
    );
  }
  return n;
}
