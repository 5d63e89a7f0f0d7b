/** `qvm ports`: the port forwards of a VM: those in effect while it runs, else as configured. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { portForwards } from "../vm/ports.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "ports",
  summary: "show a VM's port forwards (host -> guest)",
  description:
    "While the VM runs: the forwards in effect, with the host port each 'auto' forward got at\n" +
    "start. Otherwise: the forwards as configured ('auto' until the next start). Forwards\n" +
    "written in arguments/args (hostfwd= of -netdev user or -nic user) are listed too.",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {},
  examples: ["qvm ports web1", "qvm ports web1 --json"],
};

/** Prints one `ADDRESS:HOST -> GUEST/PROTO` line per forward, or JSON. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const { vm, running, forwards } = await portForwards(ctx, args.positionals[0]);
  if (ctx.json) {
    ctx.outJson({ id: vm.id, name: vm.name, running, forwards });
    return 0;
  }
  for (const r of forwards) {
    ctx.out(`${r.host_address}:${r.host_port} -> ${r.guest_port}/${r.proto}`);
  }
  return 0;
}
