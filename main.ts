/**
 * qvm's entry point: global flags, dispatch to one lazily loaded command, and the single place
 * where errors become one line on stderr and an exit code.
 */
import { Context, OutputClosed } from "./src/cli/context.ts";
import { COMMANDS, findCommand, helpModule } from "./src/cli/registry.ts";
import { GLOBAL_OPTIONS, parseCommandArgs, selectSubcommand } from "./src/cli/spec.ts";
import { didYouMean, errorReport, ExitCode, UsageError } from "./src/errors.ts";
import { refuseUnsafeDirs, resolveDirs } from "./src/state/paths.ts";
import { VERSION } from "./src/version.ts";

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const global = Object.entries(GLOBAL_OPTIONS).map(([name, o]) =>
    `  --${name}${o.type === "string" ? ` ${o.value}` : ""}`.padEnd(22) + o.description
  );
  return [
    "Usage: qvm <command> [arguments] [options]",
    "",
    "qvm manages QEMU virtual machines: state in SQLite, QEMU detached, QMP over unix sockets.",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Global options:",
    ...global,
    "  -V, --version".padEnd(22) + "print qvm's version",
    "",
    "Exit codes: 0 ok, 1 failure, 2 timeout, 3 invalid input or not found, 4 permission.",
    "Run 'qvm <command> --help' for a command's arguments.",
  ].join("\n");
}

/**
 * Splits argv into the command name and the rest. Global flags given before the command move
 * after its own arguments (before any `--`), so `qvm --data-dir D storage ls` finds subcommand `ls`.
 */
export function splitCommand(argv: string[]): { command?: string; rest: string[] } {
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("-")) {
      const after = argv.slice(i + 1);
      const end = after.indexOf("--");
      if (end === -1) return { command: arg, rest: [...after, ...rest] };
      return { command: arg, rest: [...after.slice(0, end), ...rest, ...after.slice(end)] };
    }
    rest.push(arg);
    const name = arg.replace(/^--?/, "");
    if (GLOBAL_OPTIONS[name]?.type === "string" && !arg.includes("=") && i + 1 < argv.length) {
      rest.push(argv[++i]);
    }
  }
  return { rest };
}

async function run(argv: string[]): Promise<number> {
  const { command, rest } = splitCommand(argv);
  if (!command) {
    if (rest.includes("--version") || rest.includes("-V")) {
      console.log(`qvm ${VERSION}`);
      return ExitCode.ok;
    }
    const unknown = rest.find((a) => !["--help", "-h", "--json", "--debug"].includes(a));
    if (unknown && rest.includes("--help") === false && rest.includes("-h") === false) {
      throw new UsageError(`missing command (see 'qvm --help')`);
    }
    console.log(mainHelp());
    return rest.length === 0 ? ExitCode.invalid : ExitCode.ok;
  }
  const entry = findCommand(command);
  if (!entry) {
    const hint = didYouMean(command, COMMANDS.map((c) => c.name));
    throw new UsageError(`unknown command '${command}'${hint || " (see 'qvm --help')"}`);
  }
  const module = await entry.load();
  const args = module.parse ? module.parse(rest) : parseCommandArgs(module.spec, rest);
  if (args.values.help) {
    const chosen = selectSubcommand(module.spec, rest);
    const { formatHelp } = await helpModule();
    console.log(formatHelp(chosen.spec, chosen.path));
    return ExitCode.ok;
  }
  const dirs = resolveDirs({
    dataDir: args.values["data-dir"] as string | undefined,
    runtimeDir: args.values["runtime-dir"] as string | undefined,
  });
  if (!module.reportsUnsafeDirs) refuseUnsafeDirs(dirs);
  const ctx = new Context({
    dirs,
    json: args.values.json === true,
    debug: args.values.debug === true,
    readOnly: entry.readOnly === true ||
      entry.readOnlySubcommands?.includes(args.subcommand ?? "") === true,
  });
  try {
    return (await module.run(ctx, args)) ?? ExitCode.ok;
  } finally {
    ctx.close();
  }
}

/** Runs qvm with `argv` and returns the exit code; errors become one line on stderr. */
export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  try {
    return await run(argv);
  } catch (err) {
    if (err instanceof OutputClosed) return ExitCode.ok;
    const report = errorReport(err);
    console.error(`qvm: ${report.message}`);
    if (report.detail) console.error(report.detail.trimEnd());
    if (debug) console.error((err as Error)?.stack);
    return report.exitCode;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
