/**
 * Running a command in a VM's guest through its guest agent (`qvm exec`): as the VM's user on a
 * cloud_init VM (through runuser), else as the agent's root; its output and exit code come back
 * when it ends.
 */
import { UsageError } from "../errors.ts";
import { agentModule, cloudModule } from "../cloud/lazy.ts";
import type { ExecResult } from "../cloud/agent.ts";
import { cloudPaths } from "../vm_files.ts";
import type { VmEnv } from "./env.ts";
import { requireGuest } from "./guest.ts";
import { thawedWarning } from "./observe.ts";

/** What to run: the argv, as whom (`--user`, `--root`), its input, and how long to wait. */
export interface ExecRequest {
  command: string[];
  /** The `--user` and `--root` flags as given. */
  who: { user?: unknown; root?: unknown };
  input?: ReadableStream<Uint8Array>;
  timeoutS?: number;
}

/**
 * Runs `request.command` in the guest of VM `idOrName` and waits for it to end. The result says
 * which output streams the agent cut and at how many bytes (`limit`). A command still running at
 * the timeout runs on: the TimeoutError names its pid and how to stop it.
 */
export async function execInGuest(
  env: VmEnv,
  idOrName: string,
  request: ExecRequest,
): Promise<ExecResult & { limit: number }> {
  const { vm, thawed } = await requireGuest(env, idOrName);
  if (thawed) env.warn?.(thawedWarning(vm.name));
  const { invokingUser, requireAgentChannel } = await cloudModule();
  requireAgentChannel(vm);
  const command = [...request.command];
  const user = execUser(request.who, { cloudInit: vm.config.cloud_init, fallback: invokingUser() });
  if (user !== undefined) command.unshift("runuser", "-u", user, "--");
  const { agentExec, ExecTimeoutError, AGENT_OUTPUT_LIMIT } = await agentModule();
  const timeoutS = request.timeoutS;
  try {
    const result = await agentExec(cloudPaths(env.dirs, vm.id).agentSocket, command, {
      input: request.input,
      deadline: timeoutS === undefined ? undefined : Date.now() + timeoutS * 1000,
    });
    return { ...result, limit: AGENT_OUTPUT_LIMIT };
  } catch (err) {
    if (err instanceof ExecTimeoutError) {
      err.message += `; stop it with 'qvm exec ${vm.name} --root -- kill ${err.pid}'`;
    }
    throw err;
  }
}

/** Who runs the command: `--root` → the agent's root, `--user`, else a cloud_init VM's user. */
export function execUser(
  values: { user?: unknown; root?: unknown },
  vm: { cloudInit?: { user?: string; user_data?: string }; fallback: string },
): string | undefined {
  if (values.root === true && typeof values.user === "string") {
    throw new UsageError("qvm exec: give --user or --root, not both");
  }
  if (values.root === true) return undefined;
  if (typeof values.user === "string") {
    if (!/^[a-z_][a-z0-9_.-]{0,31}$/i.test(values.user)) {
      throw new UsageError(`qvm exec: invalid --user '${values.user}'`);
    }
    return values.user === "root" ? undefined : values.user;
  }
  // With verbatim user_data qvm creates no user, so none is known to exist: the agent's root.
  if (vm.cloudInit === undefined || vm.cloudInit.user_data !== undefined) return undefined;
  return vm.cloudInit.user ?? vm.fallback;
}
