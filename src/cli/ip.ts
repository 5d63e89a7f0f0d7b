/** `qvm ip`: the guest's IP addresses, as its guest agent reports them. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { NotRunningError } from "../errors.ts";
import { qemuAlive } from "../vm/observe.ts";
import { agentModule, cloudModule } from "../cloud/lazy.ts";
import { cloudPaths } from "../vm_files.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "ip",
  summary: "show a VM's IP addresses (from the guest agent)",
  description:
    "Asks the guest agent (guest-network-get-interfaces) for the guest's addresses; loopback is\n" +
    "left out. Prints 'INTERFACE ADDRESS/PREFIX' lines, IPv4 first.",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {},
  examples: ["qvm ip web1", "qvm ip web1 --json"],
};

/** Prints the addresses. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const vm = ctx.store.require(args.positionals[0]);
  if (!qemuAlive(ctx, vm)) throw new NotRunningError(`VM '${vm.name}' is not running`);
  const { requireAgentChannel } = await cloudModule();
  requireAgentChannel(vm);
  const { agentAddresses } = await agentModule();
  const addresses = await agentAddresses(cloudPaths(ctx.dirs, vm.id).agentSocket, 10_000);
  addresses.sort((a, b) => a.family.localeCompare(b.family));
  if (ctx.json) {
    ctx.outJson({ id: vm.id, name: vm.name, addresses });
    return 0;
  }
  for (const a of addresses) ctx.out(`${a.interface} ${a.address}/${a.prefix}`);
  return 0;
}
