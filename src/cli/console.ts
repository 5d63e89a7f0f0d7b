/** `qvm console`: an interactive serial console; Ctrl-] detaches (the VM keeps running). */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { openConsole, relayConsole } from "../vm/console.ts";

/**
 * How long the guest may take to read what was sent before the console gives up on it: piped
 * input may be long; keys typed at a terminal are read long before Ctrl-].
 */
const DRAIN_TIMEOUT_MS = { piped: 30_000, terminal: 2_000 };

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "console",
  summary: "attach to a VM's serial console (detach with Ctrl-])",
  description:
    "Keys go to the guest's serial port and its output comes back. Ctrl-] detaches and leaves the\n" +
    "VM running. Input from a pipe or file is sent whole: at its end qvm waits until QEMU has\n" +
    "passed all of it to the guest, then prints the guest's answer until it has been quiet for\n" +
    "1 s (at most 10 s). One console at a time: a second one is refused while another client\n" +
    "is attached, naming it. The output is also in 'qvm logs'.",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {},
  examples: ["qvm console web1", "printf 'uname -a\\n' | qvm console web1"],
};

/** Connects stdin/stdout to the serial socket until detach, EOF, or the VM stopping. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const con = await openConsole(ctx, args.positionals[0]);
  const tty = Deno.stdin.isTerminal();
  if (tty) {
    Deno.stdin.setRaw(true);
    ctx.note(`connected to ${con.vm.name}'s serial console; Ctrl-] detaches\r`);
  }
  let delivered: boolean;
  try {
    ({ delivered } = await relayConsole(con, {
      input: Deno.stdin,
      output: Deno.stdout.writable,
      drainTimeoutMs: tty ? DRAIN_TIMEOUT_MS.terminal : DRAIN_TIMEOUT_MS.piped,
    }));
  } finally {
    if (tty) Deno.stdin.setRaw(false);
  }
  if (!delivered) {
    ctx.warn("the guest did not take all the input in time (is it paused?); the rest was dropped");
  }
  if (tty) ctx.note("\ndetached");
  return 0;
}
