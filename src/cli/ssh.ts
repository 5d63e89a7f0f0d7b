/** `qvm ssh`: OpenSSH into a VM over its forwarded port, with qvm's key and a per-VM known_hosts. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { NotRunningError, QvmError } from "../errors.ts";
import { isOurQemu } from "../qemu/process.ts";
import type { VmRecord } from "../state/mod.ts";
import { cloudModule } from "../lazy.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "ssh",
  summary: "open a shell or run a command in a VM over SSH",
  description:
    "Runs OpenSSH with the VM's forwarded port (network.ports must forward guest port 22), the\n" +
    "cloud_init user, qvm's own key and a known_hosts file kept for this VM. stdin, stdout and\n" +
    "stderr are passed through and qvm exits with ssh's exit code (255: ssh itself failed).\n" +
    "One COMMAND word is a shell line for the guest ('echo $HOME'); several words run as given\n" +
    "(sh -c 'exit 3'), each quoted.",
  positionals: [
    { name: "VM", description: "id or name", complete: "vm" },
    { name: "COMMAND", description: "command to run (after --)", optional: true, variadic: true },
  ],
  options: {},
  examples: ["qvm ssh web1", "qvm ssh web1 -- cat /etc/hostname"],
};

/** Runs ssh and returns its exit code. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const [name, ...command] = args.positionals;
  const vm = ctx.store.require(name);
  if (!isOurQemu(vm.pid, vm.id)) throw new NotRunningError(`VM '${vm.name}' is not running`);
  const { sshCommand } = await cloudModule();
  const argv = await sshCommand(ctx.dirs, vm, { command });
  if (ctx.debug) ctx.note(argv.join(" "));
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new QvmError("ssh not found: install openssh-client");
    }
    throw error;
  }
  const status = await child.status;
  if (status.code === 255) await hintIfBooting(ctx, vm);
  return status.signal ? 128 + signalNumber(status.signal) : status.code;
}

/** After ssh failed (255): if no SSH server answers on the forward yet, says so and what to run. */
async function hintIfBooting(ctx: Context, vm: VmRecord): Promise<void> {
  if (!await (await cloudModule()).sshNotAnswering(ctx.dirs, vm)) return;
  if (!isOurQemu(vm.pid, vm.id)) return; // it stopped meanwhile: ssh's own line says enough
  ctx.note(
    `qvm: VM '${vm.name}' runs, but its SSH server does not answer yet (the guest may still ` +
      `be booting): wait for it with 'qvm wait ${vm.name} --for ssh'`,
  );
}

function signalNumber(signal: Deno.Signal): number {
  const numbers: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGTERM: 15,
  };
  return numbers[signal] ?? 1;
}
