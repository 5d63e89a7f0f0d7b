/** `qvm ssh-config`: OpenSSH config blocks for VMs, for `ssh -F`, scp, rsync and editors. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import type { VmRecord } from "../state/mod.ts";
import type { SshTarget } from "../cloud/ssh.ts";
import { qemuAlive } from "../vm/observe.ts";
import { UsageError } from "../errors.ts";
import { sshForward, sshTarget } from "../cloud/mod.ts";
import { sshConfigBlock, sshHost } from "../cloud/ssh.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "ssh-config",
  summary: "print OpenSSH config blocks for VMs (ssh -F, scp, rsync, editors)",
  description:
    "Prints a 'Host NAME' block per VM with its forwarded SSH port, user, qvm's key and the\n" +
    "VM's known_hosts (checked as qvm ssh checks it), so plain OpenSSH reaches the VM:\n" +
    "ssh -F FILE NAME, scp -F FILE, rsync -e 'ssh -F FILE', or an Include in ~/.ssh/config.\n" +
    "Without VM: every VM that forwards a host port to guest port 22. The port is the one in\n" +
    "effect while a VM runs; an 'auto' port of a stopped VM is not known until it starts (such\n" +
    "a VM is left out with a warning; named, it is an error).",
  positionals: [
    {
      name: "VM",
      description: "id or name (default: all with SSH)",
      optional: true,
      variadic: true,
      complete: "vm",
    },
  ],
  options: {},
  examples: [
    "qvm ssh-config > vms.ssh && ssh -F vms.ssh web1",
    "rsync -a -e 'ssh -F vms.ssh' ./site/ web1:/srv/site/",
  ],
};

/** Prints the blocks (or JSON); a named VM that has none is an error, before anything is printed. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const named = args.positionals.length > 0;
  const vms = named
    ? args.positionals.map((name) => ctx.store.require(name))
    : ctx.store.list().filter((vm) => sshForward(ctx.dirs, vm, false) !== undefined);
  const found: { vm: VmRecord; target: SshTarget; running: boolean }[] = [];
  for (const vm of vms) {
    const running = qemuAlive(ctx, vm);
    try {
      found.push({ vm, target: await sshTarget(ctx.dirs, vm, { running }), running });
    } catch (error) {
      if (named || !(error instanceof UsageError)) throw error;
      ctx.warn(`left out ${vm.name}: ${error.message}`);
    }
  }
  if (ctx.json) {
    ctx.outJson(found.map(({ vm, target, running }) => ({
      name: vm.name,
      id: vm.id,
      running,
      host: sshHost(target),
      port: target.port,
      user: target.user,
      identity_file: target.key,
      known_hosts: target.knownHosts,
      host_key_alias: target.alias,
    })));
    return 0;
  }
  if (found.length > 0) {
    ctx.out(found.map(({ vm, target }) => sshConfigBlock(vm.name, target)).join("\n"));
  }
  return 0;
}
