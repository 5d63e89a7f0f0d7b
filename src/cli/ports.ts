/** `qvm ports`: the port forwards of a VM: those in effect while it runs, else as configured. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { optionForwards } from "../qemu/reach.ts";
import { qemuAlive } from "../vm/observe.ts";
import { cloudModule } from "../cloud/lazy.ts";

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

/** One row of the output. */
export interface PortRow {
  proto: "tcp" | "udp";
  host_address: string;
  host_port: number | "auto";
  guest_port: number;
}

/** Prints one `ADDRESS:HOST -> GUEST/PROTO` line per forward, or JSON. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const vm = ctx.store.require(args.positionals[0]);
  const running = qemuAlive(ctx, vm);
  const { activeForwards } = await cloudModule();
  const forwards = [
    ...(running ? activeForwards(ctx.dirs, vm.id) : undefined) ?? vm.config.network?.ports ?? [],
    ...optionForwards(vm.config),
  ];
  const rows: PortRow[] = forwards.map((f) => ({
    proto: f.proto,
    host_address: f.address,
    host_port: f.host,
    guest_port: f.guest,
  }));
  if (ctx.json) {
    ctx.outJson({ id: vm.id, name: vm.name, running, forwards: rows });
    return 0;
  }
  for (const r of rows) ctx.out(`${r.host_address}:${r.host_port} -> ${r.guest_port}/${r.proto}`);
  return 0;
}
