/**
 * Talking QMP to a VM once: connect, run, always close. Every command that sends a VM a QMP
 * command goes through `qmpOnce` or `withQmp`. The VM's command socket serves one client at a
 * time: a second qvm command waits its turn (up to the timeout) instead of failing.
 */
import { NotRunningError } from "../errors.ts";
import type { QmpClient } from "../qemu/qmp.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { observe } from "./observe.ts";
import { vmPaths } from "../vm_files.ts";
import { qmpModule } from "../qemu/lazy.ts";

/** Default wait for the QMP socket (another client may hold it) and for each command. */
export const QMP_TIMEOUT_MS = 30_000;

/** Options of one QMP session. */
export interface QmpOnceOptions {
  /** Bound of the connect and of the command (default 30 s). */
  timeoutMs?: number;
  /** Retry the connect while the socket is missing or busy (default true). */
  retry?: boolean;
  /** The command's arguments. */
  args?: Record<string, unknown>;
}

/** Connects to `socket`, runs `fn`, and always closes the connection. */
export async function withQmpSocket<T>(
  socket: string,
  fn: (client: QmpClient) => Promise<T>,
  options: { timeoutMs?: number; retry?: boolean } = {},
): Promise<T> {
  const { QmpClient } = await qmpModule();
  const client = await QmpClient.connect(socket, {
    timeoutMs: options.timeoutMs ?? QMP_TIMEOUT_MS,
    retry: options.retry,
  });
  try {
    return await fn(client);
  } finally {
    client.close();
    await client.closed;
  }
}

/** Runs one QMP `command` on `socket` and returns its result. */
export function qmpOnce<T = unknown>(
  socket: string,
  command: string,
  options: QmpOnceOptions = {},
): Promise<T> {
  return withQmpSocket(
    socket,
    (client) =>
      client.execute<T>(command, options.args, {
        timeoutMs: options.timeoutMs ?? QMP_TIMEOUT_MS,
      }),
    options,
  );
}

/** Looks up `idOrName` and throws NotRunningError (exit 3) unless its QEMU is alive. */
export async function requireRunning(env: VmEnv, idOrName: string): Promise<VmRecord> {
  const seen = await observe(env, env.store.require(idOrName), { qmp: false });
  if (seen.status !== "running" && seen.status !== "frozen") {
    throw new NotRunningError(`VM '${seen.vm.name}' is not running (status: ${seen.status})`);
  }
  return seen.vm;
}

/** Runs `fn` with a connected QMP client of the running VM `idOrName`; always closes it. */
export async function withQmp<T>(
  env: VmEnv,
  idOrName: string,
  fn: (client: QmpClient, vm: VmRecord) => Promise<T>,
  options: { timeoutMs?: number } = {},
): Promise<T> {
  const vm = await requireRunning(env, idOrName);
  return await withQmpSocket(vmPaths(env.dirs, vm.id).qmpSocket, (client) => fn(client, vm), {
    timeoutMs: options.timeoutMs,
  });
}
