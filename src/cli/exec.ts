/** `qvm exec`: run a command in a VM through the QEMU guest agent (no network needed). */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { requireGuest } from "../vm/guest.ts";
import { thawedWarning } from "../vm/observe.ts";
import { parseTimeout } from "./start.ts";
import { writeOut } from "./context.ts";
import { agentModule, cloudModule } from "../cloud/lazy.ts";
import { cloudPaths } from "../vm_files.ts";

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
  const { vm, thawed } = await requireGuest(ctx, name);
  if (thawed) ctx.warn(thawedWarning(vm.name));
  const { invokingUser, requireAgentChannel } = await cloudModule();
  requireAgentChannel(vm);
  const user = execUser(args.values, {
    cloudInit: vm.config.cloud_init,
    fallback: invokingUser(),
  });
  if (user !== undefined) command.unshift("runuser", "-u", user, "--");
  const { agentExec, ExecTimeoutError, AGENT_OUTPUT_LIMIT } = await agentModule();
  let result;
  try {
    result = await agentExec(cloudPaths(ctx.dirs, vm.id).agentSocket, command, {
      input: args.values.stdin ? Deno.stdin.readable : undefined,
      deadline: timeoutS === undefined ? undefined : Date.now() + timeoutS * 1000,
    });
  } catch (err) {
    if (err instanceof ExecTimeoutError) {
      err.message += `; stop it with 'qvm exec ${vm.name} --root -- kill ${err.pid}'`;
    }
    throw err;
  }
  writeOut(result.stdout);
  let offset = 0;
  while (offset < result.stderr.length) {
    offset += Deno.stderr.writeSync(result.stderr.subarray(offset));
  }
  if (result.truncated.length === 0) return result.code;
  ctx.note(
    `qvm: the guest agent cut the command's ${result.truncated.join(" and ")} at ` +
      `${AGENT_OUTPUT_LIMIT / 1024 / 1024} MiB (it keeps no more): the output above is ` +
      "incomplete; run the command over 'qvm ssh', or write its output to a file in the guest",
  );
  return result.code === 0 ? 1 : result.code;
}

/** Who runs the command: `--root` → the agent's root, `--user`, else a cloud_init VM's user. */
export function execUser(
  values: ParsedArgs["values"],
  vm: { cloudInit?: { user?: string; user_data?: string }; fallback: string },
): string | undefined {
  if (values.root === true && typeof values.user === "string") {
    throw new UsageError("qvm exec: give --user or --root, not both");
  }
  if (values.root === true) return undefined;
  if (typeof values.user === "string") {
    if (!/^[a-z_][a-z0-9_.-]{0,31}$/i.test(values.user)) {
      throw new UsageError(`qvm exec: invalid --user '${values.user}'`);
    }
    return values.user === "root" ? undefined : values.user;
  }
  // With verbatim user_data qvm creates no user, so none is known to exist: the agent's root.
  if (vm.cloudInit === undefined || vm.cloudInit.user_data !== undefined) return undefined;
  return vm.cloudInit.user ?? vm.fallback;
}
