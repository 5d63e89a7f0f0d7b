/**
 * A command's help text, generated from its spec. Loaded only for `--help` (through
 * `helpModule` in `registry.ts`), so no command's start-up pays for it.
 */
import { type CommandSpec, GLOBAL_OPTIONS, type OptionSpec, type PositionalSpec } from "./spec.ts";

function optionLabel(name: string, spec: OptionSpec): string {
  const short = spec.short ? `-${spec.short}, ` : "";
  const value = spec.type === "string" ? ` ${spec.value ?? "VALUE"}` : "";
  return `${short}--${name}${value}`;
}

function positionalLabel(p: PositionalSpec): string {
  const core = p.variadic ? `${p.name}...` : p.name;
  return p.optional ? `[${core}]` : core;
}

function columns(rows: [string, string][]): string[] {
  const width = Math.max(...rows.map(([a]) => a.length), 0);
  return rows.map(([a, b]) => `  ${a.padEnd(width)}  ${b}`);
}

/** The help text of a command (or subcommand, given its full path like `qmp run`). */
export function formatHelp(spec: CommandSpec, path: string = spec.name): string {
  const lines: string[] = [];
  if (spec.subcommands) {
    lines.push(`Usage: qvm ${path} <subcommand> [options]`, "", spec.summary);
    if (spec.description) lines.push("", spec.description);
    lines.push("", "Subcommands:");
    lines.push(...columns(spec.subcommands.map((s) => [s.name, s.summary])));
    lines.push("", `Run 'qvm ${path} <subcommand> --help' for details.`);
    return lines.join("\n");
  }
  const usage = spec.positionals.map(positionalLabel).join(" ");
  lines.push(`Usage: qvm ${path}${usage ? ` ${usage}` : ""} [options]`, "", spec.summary);
  if (spec.description) lines.push("", spec.description);
  if (spec.positionals.length > 0) {
    lines.push("", "Arguments:");
    lines.push(...columns(spec.positionals.map((p) => [p.name, p.description])));
  }
  const own = Object.entries(spec.options);
  if (own.length > 0) {
    lines.push("", "Options:");
    lines.push(...columns(own.map(([n, o]) => [optionLabel(n, o), o.description])));
  }
  lines.push("", "Global options:");
  lines.push(
    ...columns(Object.entries(GLOBAL_OPTIONS).map(([n, o]) => [optionLabel(n, o), o.description])),
  );
  if (spec.examples?.length) {
    lines.push("", "Examples:", ...spec.examples.map((e) => `  ${e}`));
  }
  return lines.join("\n");
}
