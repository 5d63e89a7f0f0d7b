/**
 * `qvm events`: a running VM's QMP events (run state changes, shutdown and its reason, device
 * removal, job progress) as lines or JSON lines, until its QEMU ends. Events are read on a QMP
 * monitor of their own (`<id>.evt`), so following them never holds the command socket (`.qmp`)
 * or the status socket (`.mon`) that other qvm commands use. A VM started by a qvm without that
 * monitor still shows its run state changes, polled on the status socket.
 */
import { type Context, writeOut } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { type EventLine, followEvents, RESTART_GRACE_MS } from "../vm/events.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "events",
  summary: "print a running VM's QMP events until it stops",
  description:
    "Events come from a QMP monitor of their own (<id>.evt): other qvm commands keep theirs.\n" +
    "QEMU keeps no history, so events start when this command connects; one reader at a time.\n" +
    "Without --follow, a VM that is not running is an error (exit 3) and the command ends when\n" +
    "its QEMU ends. --follow waits for the VM to start, goes on through restarts, and ends once\n" +
    `the VM has stayed stopped for ${
      RESTART_GRACE_MS / 1000
    } s. With --json, one JSON object a line:\n` +
    '{"time": ISO-8601, "event": NAME, "data": {...}}.',
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {
    follow: {
      type: "boolean",
      short: "f",
      description: "wait for the VM to start, and go on through restarts",
    },
  },
  examples: ["qvm events web1", "qvm events web1 --follow --json"],
};

/** An event as one human line: time, name, then `key=value` pairs of its data. */
export function formatEvent(line: EventLine): string {
  const flat: string[] = [];
  const walk = (prefix: string, value: unknown) => {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix}.${k}` : k, v);
    } else {
      flat.push(`${prefix}=${typeof value === "string" ? value : JSON.stringify(value)}`);
    }
  };
  walk("", line.data);
  return [line.time, line.event, ...flat].join(" ");
}

const encoder = new TextEncoder();

/** Prints the VM's events until it stops (with --follow: until it stays stopped). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  await followEvents(ctx, args.positionals[0], {
    follow: args.values.follow === true,
    onEvent: (line) =>
      writeOut(encoder.encode(`${ctx.json ? JSON.stringify(line) : formatEvent(line)}\n`)),
  });
  return 0;
}
