/** `qvm completions`: print a completion script for bash, zsh or fish. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { COMMANDS } from "./registry.ts";
import { bashCompletion, fishCompletion, zshCompletion } from "./_completions.ts";

const SHELLS = ["bash", "zsh", "fish"] as const;

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "completions",
  summary: "print shell completions (bash, zsh, fish)",
  description: "Completes commands, subcommands, flags, flag values and VM names.\n" +
    "Install: bash: qvm completions bash > /etc/bash_completion.d/qvm\n" +
    '         zsh:  qvm completions zsh > "${fpath[1]}/_qvm"\n' +
    "         fish: qvm completions fish > ~/.config/fish/completions/qvm.fish",
  positionals: [{ name: "SHELL", description: "bash, zsh or fish", complete: SHELLS }],
  options: {},
  examples: ["source <(qvm completions bash)"],
};

/** Loads every command's spec (the one place that does) and prints the script. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const shell = args.positionals[0];
  if (!(SHELLS as readonly string[]).includes(shell)) {
    throw new UsageError(`completions: unknown shell '${shell}' (expected bash, zsh or fish)`);
  }
  const specs = await Promise.all(COMMANDS.map(async (c) => (await c.load()).spec));
  const script = shell === "bash"
    ? bashCompletion(specs)
    : shell === "zsh"
    ? zshCompletion(specs)
    : fishCompletion(specs);
  ctx.out(script);
  return 0;
}
