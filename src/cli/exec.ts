/** `qvm exec`: run a command in a VM through the QEMU guest agent (no network needed). */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { execInGuest } from "../vm/exec.ts";
import { parseTimeout } from "./_options.ts";
import { writeOut } from "./context.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "exec",
  summary: "run a command in a VM through the guest agent",
  description:
    "Runs COMMAND with the guest agent's guest-exec (PATH is searched; no shell unless you run\n" +
    "one), prints its stdout and stderr when it ends, and exits with its exit code. With --stdin,\n" +
    "qvm's input (read to its end, any size) is passed to the command. The guest agent keeps at\n" +
    "most 16 MiB of each output stream: when it cut one, qvm says so and exits 1 (or the\n" +
    "command's own non-zero code). After --timeout the command runs on in the guest: qvm exits 2\n" +
    "and names its pid. Needs guest_agent (on by default with cloud_init). On a cloud_init VM\n" +
    "the command runs as its user (as qvm ssh logs in), through runuser (as root with\n" +
    "user_data, which names no user qvm knows); --user picks another, --root runs it as the\n" +
    "agent does, as root.",
  positionals: [
    { name: "VM", description: "id or name", complete: "vm" },
    { name: "COMMAND", description: "command and arguments (after --)", variadic: true },
  ],
  options: {
    timeout: { type: "string", value: "S", description: "give up after S seconds (default: wait)" },
    stdin: { type: "boolean", short: "i", description: "pass qvm's stdin to the command" },
    user: { type: "string", value: "NAME", description: "run as this guest user (via runuser)" },
    root: { type: "boolean", description: "run as root (the guest agent's own user)" },
  },
  examples: [
    "qvm exec web1 -- id -un",
    "qvm exec web1 -- sh -c 'df -h /'",
    "echo hi | qvm exec web1 --stdin -- cat",
  ],
};

/** Runs the command in the guest; returns its exit code. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const [name, ...command] = args.positionals;
  if (command.length === 0) {
    throw new UsageError("qvm exec: missing COMMAND (qvm exec VM -- CMD ...)");
  }
  const timeoutS = args.values.timeout === undefined
    ? undefined
    : parseTimeout(args.values.timeout, 0);
  const result = await execInGuest(ctx, name, {
    command,
    who: args.values,
    input: args.values.stdin ? Deno.stdin.readable : undefined,
    timeoutS,
  });
  writeOut(result.stdout);
  let offset = 0;
  while (offset < result.stderr.length) {
    offset += Deno.stderr.writeSync(result.stderr.subarray(offset));
  }
  if (result.truncated.length === 0) return result.code;
  ctx.note(
    `qvm: the guest agent cut the command's ${result.truncated.join(" and ")} at ` +
      `${result.limit / 1024 / 1024} MiB (it keeps no more): the output above is ` +
      "incomplete; run the command over 'qvm ssh', or write its output to a file in the guest",
  );
  return result.code === 0 ? 1 : result.code;
}
