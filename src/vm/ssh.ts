/**
 * OpenSSH into a VM (`qvm ssh`): over its forwarded port, with qvm's key and the VM's own
 * known_hosts, stdin, stdout and stderr passed through.
 */
import { QvmError } from "../errors.ts";
import { cloudModule } from "../cloud/lazy.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { requireGuest } from "./guest.ts";
import { qemuAlive, thawedWarning } from "./observe.ts";

/** What to run over ssh: the guest command, ssh's own options, and who hears the argv. */
export interface SshRequest {
  command: string[];
  extra: string[];
  /** Hears the ssh command line before it runs (for --debug). */
  onArgv?(argv: string[]): void;
}

/**
 * Runs ssh into the guest of VM `idOrName` and waits for it: ssh's exit code (128 + the signal's
 * number when a signal ended it), and, when ssh failed because no SSH server answers yet on a VM
 * that runs, a `hint` saying so and what to run.
 */
export async function sshInto(
  env: VmEnv,
  idOrName: string,
  request: SshRequest,
): Promise<{ code: number; hint?: string }> {
  const { vm, thawed } = await requireGuest(env, idOrName);
  if (thawed) env.warn?.(thawedWarning(vm.name));
  const { sshCommand } = await cloudModule();
  const argv = await sshCommand(env.dirs, vm, {
    command: request.command,
    extra: request.extra,
    warn: (m) => env.warn?.(m),
  });
  request.onArgv?.(argv);
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
  const hint = status.code === 255 ? await bootingHint(env, vm) : undefined;
  return { code: status.signal ? 128 + signalNumber(status.signal) : status.code, hint };
}

/** After ssh failed (255): if no SSH server answers on the forward yet, says so and what to run. */
async function bootingHint(env: VmEnv, vm: VmRecord): Promise<string | undefined> {
  if (!await (await cloudModule()).sshNotAnswering(env.dirs, vm)) return undefined;
  if (!qemuAlive(env, vm)) return undefined; // it stopped meanwhile: ssh's own line says enough
  return `qvm: VM '${vm.name}' runs, but its SSH server does not answer yet (the guest may ` +
    `still be booting): wait for it with 'qvm wait ${vm.name} --for ssh'`;
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
