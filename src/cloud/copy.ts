/**
 * `qvm cp`: files and directory trees between the host and a running VM, through the guest agent
 * (no network needed; see `_copy_agent.ts`) or, when the VM has no agent channel (or the user
 * asks), with scp over the VM's SSH forward, trusting the guest as `qvm ssh` does.
 */
import { NotRunningError, QvmError, TimeoutError, UsageError } from "../errors.ts";
import type { VmConfig } from "../config/mod.ts";
import type { Dirs, VmRecord } from "../state/mod.ts";
import { isOurQemu, markersIn } from "../qemu/process.ts";
import { AgentError, agentPing } from "./agent.ts";
import type { CopyOptions, CopyRequest, CopyResult } from "./copy_plan.ts";
import { checkHostSources, copyIn, CopyInterrupted, copyOut } from "./_copy_agent.ts";
import { cloudPaths } from "../vm_files.ts";
import { agentEnabled, requireAgentChannel } from "./status.ts";
import { invokingUser, sshForward, sshTarget } from "./mod.ts";
import { scpArgv } from "./ssh.ts";

export { CopyInterrupted };
export type { CopyOptions, CopyProgress, CopyResult, CopyRoute } from "./copy_plan.ts";

/**
 * Copies `request.sources` to `request.dest` (one side in `vm`) by cp's rules. Bad input (a
 * missing source, a directory without `recursive`, a destination cp would refuse) is refused
 * before anything is copied; `vm` must be running.
 */
export async function copyFiles(
  env: { dirs: Dirs },
  vm: VmRecord,
  request: CopyRequest,
  options: CopyOptions,
): Promise<CopyResult> {
  const hostSources = request.direction === "in"
    ? await checkHostSources(request.sources, options.recursive)
    : [];
  if (!isOurQemu(vm.pid, markersIn(env.dirs.runtimeDir, vm))) {
    throw new NotRunningError(`VM '${vm.name}' is not running`);
  }
  if (await chooseRoute(env.dirs, vm, options) === "agent") {
    const agent = {
      socket: cloudPaths(env.dirs, vm.id).agentSocket,
      vm: vm.name,
      user: guestUser(vm.config, invokingUser()) ?? "root",
      options,
    };
    try {
      return request.direction === "in"
        ? await copyIn(agent, hostSources, request.dest)
        : await copyOut(agent, request.sources, request.dest);
    } catch (error) {
      // An agent that allows no file work (RHEL's default list of blocked commands) says so on
      // the first call, before anything is copied.
      const refused = error instanceof AgentError && /has been disabled/i.test(error.message);
      if (!refused || options.via !== "auto" || !sshForward(env.dirs, vm, true)) throw error;
      options.warn?.(`the guest agent refuses file work (${error.message}); copying with scp`);
    }
  }
  return await copyWithScp(env.dirs, vm, request, options);
}

/** Who owns what the agent copies in: `qvm exec`'s user (cloud_init's), else root (undefined). */
export function guestUser(config: VmConfig, fallback: string): string | undefined {
  const section = config.cloud_init;
  if (section === undefined || section.user_data !== undefined) return undefined;
  const user = section.user ?? fallback;
  return user === "root" ? undefined : user;
}

async function chooseRoute(
  dirs: Dirs,
  vm: VmRecord,
  options: CopyOptions,
): Promise<"agent" | "ssh"> {
  if (options.via === "ssh") return "ssh";
  const channel = agentEnabled(vm.config);
  const ssh = sshForward(dirs, vm, true) !== undefined;
  if (!channel) {
    if (options.via === "auto" && ssh) return "ssh";
    if (options.via === "agent" || ssh) requireAgentChannel(vm);
    throw new UsageError(
      `VM '${vm.name}' has neither a guest agent channel nor an SSH forward: set ` +
        `guest_agent: true, or forward guest port 22 (network: {ports: ["auto:22"]})`,
    );
  }
  const socket = cloudPaths(dirs, vm.id).agentSocket;
  if (await agentPing(socket, options.via === "auto" && ssh ? 3000 : 10_000)) return "agent";
  if (options.via === "auto" && ssh) {
    options.warn?.("the guest agent does not answer; copying with scp over SSH");
    return "ssh";
  }
  throw new TimeoutError(
    `the guest agent of VM '${vm.name}' does not answer (is qemu-guest-agent running in the guest?)`,
  );
}

/** Copies with scp (modes and times kept); its own messages and progress meter are shown. */
async function copyWithScp(
  dirs: Dirs,
  vm: VmRecord,
  request: CopyRequest,
  options: CopyOptions,
): Promise<CopyResult> {
  const target = await sshTarget(dirs, vm, { running: true });
  const argv = scpArgv(target, {
    direction: request.direction,
    sources: request.sources,
    dest: request.dest,
    recursive: options.recursive,
  }, { quiet: !options.scpProgress });
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new QvmError("scp not found: install openssh-client");
    }
    throw error;
  }
  // Ctrl-C reaches scp from the terminal; a SIGINT sent to qvm alone is passed on.
  const stop = () => {
    try {
      child.kill("SIGINT");
    } catch { /* ended */ }
  };
  options.signal?.addEventListener("abort", stop);
  const status = await child.status;
  options.signal?.removeEventListener("abort", stop);
  if (options.signal?.aborted) {
    throw new CopyInterrupted("interrupted (scp may leave a partial file)");
  }
  if (!status.success) {
    throw new QvmError(`scp failed (exit ${status.code}); see its message above`);
  }
  return { via: "ssh", files: null, directories: null, symlinks: null, bytes: null, skipped: null };
}
