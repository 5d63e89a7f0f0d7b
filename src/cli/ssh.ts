/** `qvm ssh`: OpenSSH into a VM over its forwarded port, with qvm's key and a per-VM known_hosts. */
import type { Context } from "./context.ts";
import { type CommandSpec, GLOBAL_OPTIONS, parseCommandArgs, type ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { sshInto } from "../vm/ssh.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "ssh",
  summary: "open a shell or run a command in a VM over SSH",
  description:
    "Runs OpenSSH with the VM's forwarded port (network.ports must forward guest port 22), the\n" +
    "cloud_init user, qvm's own key and a known_hosts file kept for this VM. stdin, stdout and\n" +
    "stderr are passed through and qvm exits with ssh's exit code (255: ssh itself failed).\n" +
    "One COMMAND word is a shell line for the guest ('echo $HOME'); several words run as given\n" +
    "(sh -c 'exit 3'), each quoted.\n" +
    "ssh's own options (-L, -R, -D, -A, -t, -v, -o KEY=VALUE, ...) go before or right after VM\n" +
    "and are passed to ssh, before qvm's, so they win. Words with one '-' there are ssh's (with\n" +
    "the value of those that take one), words with '--' are qvm's; the first other word after\n" +
    "VM starts COMMAND, and everything after '--' is COMMAND as given.",
  positionals: [
    { name: "VM", description: "id or name", complete: "vm" },
    { name: "COMMAND", description: "command to run (after --)", optional: true, variadic: true },
  ],
  options: {},
  examples: [
    "qvm ssh web1",
    "qvm ssh web1 -- cat /etc/hostname",
    "qvm ssh web1 -L 8080:localhost:80 -N",
    "qvm ssh web1 -A -o ServerAliveInterval=30 -- git pull",
  ],
};

/** ssh's option letters that take a value (OpenSSH 9). */
const SSH_VALUE_LETTERS = new Set("BbcDEeFIiJLlmOoPpQRSWw");

/** What `qvm ssh`'s words are: qvm's flags, ssh's options, the VM, and the command. */
export interface SshWords {
  qvm: string[];
  ssh: string[];
  vm?: string;
  command: string[];
}

/**
 * Sorts `qvm ssh`'s words (after the command name): `--long` flags are qvm's (`--data-dir` and
 * `--runtime-dir` with their value), `-h` is qvm's help, other `-x` words before COMMAND are
 * ssh's (with the value of `-L`, `-o`, ... from the same or the next word); the first plain word
 * is VM, the next starts COMMAND. After `--`, everything is COMMAND. Once COMMAND has started,
 * only qvm's global flags are taken out of it (those written before `ssh` arrive there).
 */
export function splitSshWords(args: readonly string[]): SshWords {
  const words: SshWords = { qvm: [], ssh: [], command: [] };
  const globalValue = (arg: string) =>
    GLOBAL_OPTIONS[arg.slice(2)]?.type === "string" && !arg.includes("=");
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      words.command.push(...args.slice(i + 1));
      break;
    }
    const long = arg.startsWith("--");
    if (words.command.length > 0 && !(long && GLOBAL_OPTIONS[arg.slice(2).split("=")[0]])) {
      words.command.push(arg);
    } else if (long || arg === "-h") {
      words.qvm.push(arg);
      if (long && globalValue(arg) && i + 1 < args.length) words.qvm.push(args[++i]);
    } else if (arg.length > 1 && arg[0] === "-") {
      words.ssh.push(arg);
      for (let k = 1; k < arg.length; k++) {
        if (!SSH_VALUE_LETTERS.has(arg[k])) continue;
        if (k === arg.length - 1) {
          if (i + 1 >= args.length) {
            throw new UsageError(`qvm ssh: ssh option '-${arg[k]}' needs a value`);
          }
          words.ssh.push(args[++i]);
        }
        break;
      }
    } else if (words.vm === undefined) {
      words.vm = arg;
    } else {
      words.command.push(arg);
    }
  }
  return words;
}

/** Parses `qvm ssh`'s words: qvm's flags as usual, ssh's options into `values["ssh-options"]`. */
export function parse(args: readonly string[]): ParsedArgs {
  const words = splitSshWords(args);
  const parsed = parseCommandArgs(spec, [
    ...words.qvm,
    ...(words.vm === undefined ? [] : [words.vm]),
    "--",
    ...words.command,
  ]);
  parsed.values["ssh-options"] = words.ssh;
  return parsed;
}

/** Runs ssh and returns its exit code. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const [name, ...command] = args.positionals;
  const { code, hint } = await sshInto(ctx, name, {
    command,
    extra: (args.values["ssh-options"] ?? []) as string[],
    onArgv: (argv) => {
      if (ctx.debug) ctx.note(argv.join(" "));
    },
  });
  if (hint) ctx.note(hint);
  return code;
}
