/**
 * qvm's own argument parser, as a table of specifications: every accepted form of a flag, `--`,
 * short flags and groups, subcommands after global flags, and the one-line UsageErrors (exit 3)
 * for everything it refuses.
 */
import assert from "node:assert/strict";
import { splitCommand } from "../../main.ts";
import { type CommandSpec, parseCommandArgs, type ParsedArgs } from "../../src/cli/spec.ts";
import { ExitCode, UsageError } from "../../src/errors.ts";

const ADD: CommandSpec = {
  name: "add",
  summary: "define",
  positionals: [{ name: "CONFIG", description: "files", optional: true, variadic: true }],
  options: {
    name: { type: "string", description: "name" },
    cpu: { type: "string", description: "cpus" },
    empty: { type: "boolean", description: "empty" },
    tag: { type: "string", short: "t", multiple: true, description: "tags" },
  },
};

const LS: CommandSpec = {
  name: "ls",
  summary: "list",
  positionals: [],
  options: {
    status: { type: "string", description: "filter" },
    quiet: { type: "boolean", short: "q", description: "names only" },
  },
};

const RM: CommandSpec = {
  name: "rm",
  summary: "remove",
  positionals: [{ name: "VM", description: "vm", variadic: true }],
  options: {
    force: { type: "boolean", short: "f", description: "force" },
    yes: { type: "boolean", short: "y", description: "yes" },
  },
};

const STATUS: CommandSpec = {
  name: "status",
  summary: "status",
  positionals: [{ name: "VM", description: "vm" }],
  options: {},
};

const STORAGE: CommandSpec = {
  name: "storage",
  summary: "disks",
  positionals: [],
  options: {},
  subcommands: [
    {
      name: "ls",
      summary: "list",
      positionals: [{ name: "VM", description: "vm", optional: true }],
      options: {},
    },
    {
      name: "verify",
      summary: "check",
      positionals: [{ name: "VM", description: "vm" }],
      options: { deep: { type: "boolean", description: "deep" } },
    },
  ],
};

function parsed(spec: CommandSpec, args: string[]): Omit<ParsedArgs, "values"> & {
  values: Record<string, unknown>;
} {
  const result = parseCommandArgs(spec, args);
  return { ...result, values: { ...result.values } };
}

const ACCEPTED: {
  name: string;
  spec: CommandSpec;
  args: string[];
  want: ReturnType<typeof parsed>;
}[] = [
  {
    name: "--flag value and --flag=value",
    spec: ADD,
    args: ["--name", "web", "--cpu=2", "a.yaml"],
    want: { positionals: ["a.yaml"], values: { name: "web", cpu: "2" }, subcommand: undefined },
  },
  {
    name: "a value that starts with '-' given with =",
    spec: ADD,
    args: ["--name=-web"],
    want: { positionals: [], values: { name: "-web" }, subcommand: undefined },
  },
  {
    name: "a lone '-' is a value and a positional",
    spec: ADD,
    args: ["--name", "-", "-"],
    want: { positionals: ["-"], values: { name: "-" }, subcommand: undefined },
  },
  {
    name: "an empty value",
    spec: ADD,
    args: ["--name="],
    want: { positionals: [], values: { name: "" }, subcommand: undefined },
  },
  {
    name: "short flags, alone and grouped",
    spec: RM,
    args: ["-f", "a", "-fy", "b"],
    want: { positionals: ["a", "b"], values: { force: true, yes: true }, subcommand: undefined },
  },
  {
    name: "short string flag, separate and attached; multiple keeps every value",
    spec: ADD,
    args: ["-t", "one", "-ttwo", "--tag=three"],
    want: { positionals: [], values: { tag: ["one", "two", "three"] }, subcommand: undefined },
  },
  {
    name: "a repeated flag keeps its last value",
    spec: LS,
    args: ["--status=running", "--status", "stopped", "--json", "--json"],
    want: { positionals: [], values: { status: "stopped", json: true }, subcommand: undefined },
  },
  {
    name: "everything after -- is positional",
    spec: RM,
    args: ["a", "--", "--force", "-y", "--"],
    want: { positionals: ["a", "--force", "-y", "--"], values: {}, subcommand: undefined },
  },
  {
    name: "global flags anywhere; -h is --help",
    spec: STATUS,
    args: ["--data-dir", "D", "web", "--runtime-dir=R", "--debug", "-h"],
    want: {
      positionals: ["web"],
      values: { "data-dir": "D", "runtime-dir": "R", debug: true, help: true },
      subcommand: undefined,
    },
  },
  {
    name: "--help skips the positional checks",
    spec: STATUS,
    args: ["--help"],
    want: { positionals: [], values: { help: true }, subcommand: undefined },
  },
  {
    name: "a global flag with a value before the subcommand",
    spec: STORAGE,
    args: ["--data-dir", "D", "ls"],
    want: { positionals: [], values: { "data-dir": "D" }, subcommand: "ls" },
  },
  {
    name: "a global flag with a value after the subcommand",
    spec: STORAGE,
    args: ["ls", "--data-dir", "D", "web"],
    want: { positionals: ["web"], values: { "data-dir": "D" }, subcommand: "ls" },
  },
  {
    name: "a subcommand's own flag",
    spec: STORAGE,
    args: ["--data-dir=D", "verify", "--deep", "web"],
    want: { positionals: ["web"], values: { "data-dir": "D", deep: true }, subcommand: "verify" },
  },
];

for (const row of ACCEPTED) {
  Deno.test(`parse accepts ${row.name}`, () => {
    assert.deepEqual(parsed(row.spec, row.args), row.want);
  });
}

const REFUSED: { name: string; spec: CommandSpec; args: string[]; message: string }[] = [
  {
    name: "an unknown long flag",
    spec: LS,
    args: ["--colour"],
    message: "qvm ls: unknown option '--colour'",
  },
  {
    name: "an unknown flag with a value",
    spec: LS,
    args: ["--colour=red"],
    message: "qvm ls: unknown option '--colour'",
  },
  {
    name: "flags are case-sensitive (the flag meant is named)",
    spec: LS,
    args: ["--JSON"],
    message: "qvm ls: unknown option '--JSON': did you mean '--json'?",
  },
  { name: "an unknown short flag", spec: LS, args: ["-x"], message: "qvm ls: unknown option '-x'" },
  {
    name: "an unknown flag in a group",
    spec: RM,
    args: ["-fz", "a"],
    message: "qvm rm: unknown option '-z'",
  },
  { name: "a negative number", spec: ADD, args: ["-1"], message: "qvm add: unknown option '-1'" },
  {
    name: "a missing value",
    spec: LS,
    args: ["--status"],
    message: "qvm ls: option '--status' needs a value",
  },
  {
    name: "a flag where a value should be",
    spec: ADD,
    args: ["--cpu", "-2"],
    message:
      "qvm add: option '--cpu' needs a value (write --cpu=-2 for a value that starts with '-')",
  },
  {
    name: "a value for a boolean flag",
    spec: LS,
    args: ["--json=yes"],
    message: "qvm ls: option '--json' takes no value",
  },
  {
    name: "a missing positional",
    spec: STATUS,
    args: [],
    message: "qvm status: missing argument VM",
  },
  {
    name: "a surplus positional",
    spec: STATUS,
    args: ["a", "b"],
    message: "qvm status: unexpected argument 'b'",
  },
  {
    name: "a positional where none is taken",
    spec: LS,
    args: ["web"],
    message: "qvm ls: unexpected argument 'web'",
  },
  {
    name: "a missing subcommand",
    spec: STORAGE,
    args: ["--data-dir", "D"],
    message: "storage: missing subcommand (ls, verify)",
  },
  {
    name: "an unknown subcommand",
    spec: STORAGE,
    args: ["frob"],
    message: "storage: unknown subcommand 'frob' (ls, verify)",
  },
  {
    name: "a subcommand's flag on another subcommand",
    spec: STORAGE,
    args: ["ls", "--deep"],
    message: "qvm storage ls: unknown option '--deep'",
  },
];

for (const row of REFUSED) {
  Deno.test(`parse refuses ${row.name} with one line, exit ${ExitCode.invalid}`, () => {
    assert.throws(() => parseCommandArgs(row.spec, row.args), (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.equal(err.exitCode, ExitCode.invalid);
      assert.equal(err.message, row.message);
      return true;
    });
  });
}

Deno.test("global flags before the command move after its arguments, before any --", () => {
  assert.deepEqual(splitCommand(["--data-dir", "D", "storage", "ls"]), {
    command: "storage",
    rest: ["ls", "--data-dir", "D"],
  });
  assert.deepEqual(splitCommand(["--json", "--data-dir=D", "rm", "a", "--", "-b"]), {
    command: "rm",
    rest: ["a", "--json", "--data-dir=D", "--", "-b"],
  });
  assert.deepEqual(splitCommand(["--json"]), { rest: ["--json"] });
});
