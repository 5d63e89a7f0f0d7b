/**
 * What `qvm qmp` asks of a running VM over its command socket: any QMP command, key presses, a
 * screen dump, pause and resume, and device hot-plug and unplug (waiting for the guest to let go).
 * Each runs in one QMP session (see `withQmp`); a QMP error reply is one line naming the command.
 */
import { QvmError, TimeoutError, UsageError } from "../errors.ts";
import { encodeRequest, type QmpClient, QmpError, type QmpEvent } from "../qemu/qmp.ts";
import { qmpKeys } from "../qemu/keys.ts";
import type { VmRecord } from "../state/mod.ts";
import type { VmEnv } from "./env.ts";
import { withQmp } from "./qmp_session.ts";

/** The bound of one session: the wait for the socket (another client may hold it), each reply. */
export interface QmpCallOptions {
  timeoutMs: number;
}

/** `execute`, with a QMP error reply turned into one line naming the command, class and desc. */
async function call<T = unknown>(
  client: QmpClient,
  command: string,
  options: { args?: Record<string, unknown>; timeoutMs: number },
): Promise<T> {
  try {
    return await client.execute<T>(command, options.args, { timeoutMs: options.timeoutMs });
  } catch (error) {
    if (error instanceof QmpError) {
      throw new QvmError(`QMP ${command} failed: ${error.qmpClass}: ${error.message}`, {
        cause: error,
      });
    }
    throw error;
  }
}

/**
 * Runs QMP `command` with `args` on the running VM `idOrName` and returns QEMU's reply (undefined
 * for `quit`, which QEMU answers by closing). Arguments QEMU could not read are refused first.
 */
export async function runQmpCommand(
  env: VmEnv,
  idOrName: string,
  options: QmpCallOptions & { command: string; args?: Record<string, unknown> },
): Promise<unknown> {
  const { command, args, timeoutMs } = options;
  try {
    // What QEMU could not read is refused here, before the VM is looked at.
    encodeRequest({ execute: command, arguments: args, id: "qvm-0" });
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(`invalid JSON-ARGS: ${error.message}`);
    throw error;
  }
  return await withQmp(env, idOrName, (client) => call(client, command, { args, timeoutMs }), {
    timeoutMs,
  });
}

/**
 * Presses each chord of QEMU key names in turn with `send-key` (held `holdMs`, else QEMU's own
 * 100 ms), one at a time: QEMU queues each press, hold and release behind the previous one.
 */
export async function sendKeys(
  env: VmEnv,
  idOrName: string,
  options: QmpCallOptions & { chords: string[][]; holdMs?: number },
): Promise<VmRecord> {
  const { timeoutMs, holdMs } = options;
  return await withQmp(env, idOrName, async (client, vm) => {
    for (const keys of options.chords) {
      const args: Record<string, unknown> = { keys: qmpKeys(keys) };
      if (holdMs !== undefined) args["hold-time"] = holdMs;
      await call(client, "send-key", { args, timeoutMs });
    }
    return vm;
  }, { timeoutMs });
}

/** Has QEMU write the VM's screen to `file` (absolute) as `format`; the file's size in bytes. */
export async function screendump(
  env: VmEnv,
  idOrName: string,
  options: QmpCallOptions & { file: string; format: "png" | "ppm" },
): Promise<{ vm: VmRecord; bytes: number }> {
  const { file, format, timeoutMs } = options;
  const vm = await withQmp(env, idOrName, async (client, vm) => {
    await call(client, "screendump", { args: { filename: file, format }, timeoutMs });
    return vm;
  }, { timeoutMs });
  try {
    return { vm, bytes: (await Deno.stat(file)).size };
  } catch (error) {
    throw new QvmError(`QEMU reported success but ${file} is missing`, { cause: error });
  }
}

/** Pauses (QMP `stop`) or resumes (`cont`) the VM's CPUs; its run state after. */
export async function setCpuState(
  env: VmEnv,
  idOrName: string,
  options: QmpCallOptions & { action: "pause" | "resume" },
): Promise<{ vm: VmRecord; status: string; running: boolean }> {
  const { action, timeoutMs } = options;
  return await withQmp(env, idOrName, async (client, vm) => {
    await call(client, action === "pause" ? "stop" : "cont", { timeoutMs });
    const state = await call<{ status: string; running: boolean }>(client, "query-status", {
      timeoutMs,
    });
    return { vm, status: state.status, running: state.running };
  }, { timeoutMs });
}

/** Hot-plugs device `id` of model `driver` with `properties` (QMP `device_add`). */
export async function addDevice(
  env: VmEnv,
  idOrName: string,
  options: QmpCallOptions & {
    driver: string;
    id: string;
    properties: Record<string, string | number | boolean>;
  },
): Promise<VmRecord> {
  const { driver, id, properties, timeoutMs } = options;
  return await withQmp(env, idOrName, async (client, vm) => {
    await call(client, "device_add", { args: { driver, id, ...properties }, timeoutMs });
    return vm;
  }, { timeoutMs });
}

/** Resolves when the device is gone; rejects if the guest reports it refused the unplug. */
function removal(client: QmpClient, id: string, options: { since: number; timeoutMs: number }) {
  const forDevice = (event: QmpEvent) => event.data?.device === id;
  const deleted = client.waitForEvent("DEVICE_DELETED", { ...options, match: forDevice });
  const refused = client.waitForEvent("DEVICE_UNPLUG_GUEST_ERROR", {
    ...options,
    match: forDevice,
  }).then(() => {
    throw new QvmError(`the guest refused to release device '${id}'`);
  });
  // The loser of the race is rejected when the session closes; nobody needs that rejection.
  deleted.catch(() => {});
  refused.catch(() => {});
  return Promise.race([deleted, refused]);
}

/**
 * Asks QEMU to unplug device `id` (QMP `device_del`) and, with `wait`, waits for its
 * DEVICE_DELETED event: a guest that does not release the device ends it in a TimeoutError.
 */
export async function removeDevice(
  env: VmEnv,
  idOrName: string,
  options: QmpCallOptions & { id: string; wait: boolean },
): Promise<VmRecord> {
  const { id, wait, timeoutMs } = options;
  return await withQmp(env, idOrName, async (client, vm) => {
    const since = client.events.length;
    await call(client, "device_del", { args: { id }, timeoutMs });
    if (!wait) return vm;
    try {
      await removal(client, id, { since, timeoutMs });
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
      throw new TimeoutError(
        `device '${id}' of ${vm.name} was not removed within ${timeoutMs / 1000} s: the guest ` +
          "did not release it (PCI hot-unplug needs the guest's cooperation; is it paused or " +
          "still booting?). The request stays pending.",
      );
    }
    return vm;
  }, { timeoutMs });
}
