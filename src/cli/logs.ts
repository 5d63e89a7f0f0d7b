/**
 * `qvm logs`: the VM's serial console log. `--follow` keeps printing while the VM runs: through a
 * log that is truncated or replaced, through a restart, and from the start of a VM still starting.
 */
import { type Context, writeOut } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { copyLog, RESTART_GRACE_MS } from "../vm/logs.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "logs",
  summary: "print a VM's serial console log",
  description: "The log spans every run of the VM. --qemu prints QEMU's own messages instead.\n" +
    "--follow keeps printing new output while the VM runs: it waits for a VM still starting,\n" +
    "reads a truncated or replaced log from its new start, goes on through a restart, and ends\n" +
    `once the VM has stopped and was not started again within ${RESTART_GRACE_MS / 1000} s.`,
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {
    follow: {
      type: "boolean",
      short: "f",
      description: "keep printing new output until the VM stops",
    },
    qemu: { type: "boolean", description: "QEMU's own log (errors, signals) of the last run" },
  },
  examples: ["qvm logs web1", "qvm logs web1 --follow"],
};

/** Copies the log to stdout, following it while the VM's QEMU lives when asked. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  await copyLog(ctx, args.positionals[0], {
    qemu: args.values.qemu === true,
    follow: args.values.follow === true,
    write: writeOut,
  });
  return 0;
}
