/**
 * A QMP session with a running VM, for commands that act on it (`qmp`, live snapshots). The VM's
 * command socket serves one client at a time: a second qvm command waits its turn (up to the
 * timeout) instead of failing.
 */
import type { Context } from "../cli/context.ts";
import { NotRunningError } from "../errors.ts";
import type { QmpClient } from "../qemu/qmp.ts";
import type { VmRecord } from "../state/mod.ts";
import { observe } from "./observe.ts";
import { vmPaths } from "./paths.ts";

/** Default wait for the QMP socket (another client may hold it) and for each command. */
export const QMP_TIMEOUT_MS = 30_000;

/** Looks up `idOrName` and throws NotRunningError (exit 3) unless its QEMU is alive. */
export async function requireRunning(ctx: Context, idOrName: string): Promise<VmRecord> {
  const seen = await observe(ctx, ctx.store.require(idOrName), { qmp: false });
  if (seen.status !== "running") {
    throw new NotRunningError(`VM '${seen.vm.name}' is not running (status: ${seen.status})`);
  }
  return seen.vm;
}

/** Runs `fn` with a connected QMP client of the running VM `idOrName`; always closes it. */
export async function withQmp<T>(
  ctx: Context,
  idOrName: string,
  fn: (client: QmpClient, vm: VmRecord) => Promise<T>,
  options: { timeoutMs?: number } = {},
): Promise<T> {
  const vm = await requireRunning(ctx, idOrName);
  const { QmpClient } = await import("../qemu/qmp.ts");
  const client = await QmpClient.connect(vmPaths(ctx.dirs, vm.id).qmpSocket, {
    timeoutMs: options.timeoutMs ?? QMP_TIMEOUT_MS,
  });
  try {
    return await fn(client, vm);
  } finally {
    client.close();
    await client.closed;
  }
}
