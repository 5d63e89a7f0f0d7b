/**
 * `qvm qmp`: talk to a running VM over QMP — any command (`run`), key chords and typed text, screen
 * dumps, pause and resume, and device hot-plug. Arguments are checked before anything is sent.
 */
import type { Context } from "./context.ts";
import type { CommandSpec, OptionSpec, ParsedArgs, PositionalSpec } from "./spec.ts";
import { QvmError, TimeoutError, UsageError } from "../errors.ts";
import { encodeRequest, type QmpClient, QmpError, type QmpEvent } from "../qemu/qmp.ts";
import { parseChord, qmpKeys, textKeys } from "../qemu/keys.ts";
import type { VmRecord } from "../state/mod.ts";
import { withQmp } from "../vm/qmp_session.ts";
import { parseHoldTime, parseJsonArgs, parseProperties, screendumpTarget } from "./_qmp_args.ts";
import { parseTimeout } from "./start.ts";

const DEFAULT_TIMEOUT_S = 30;
/** How long `type` holds each key down unless `--hold-time` says otherwise. */
const TYPE_HOLD_MS = 20;

const vmArg: PositionalSpec = { name: "VM", description: "id or name", complete: "vm" };

const timeout: OptionSpec = {
  type: "string",
  value: "S",
  description: `seconds to wait for the QMP socket (another client may hold it) and for each ` +
    `reply (default ${DEFAULT_TIMEOUT_S})`,
};

const KEY_NAMES =
  "Key names are QEMU's (QKeyCode): a-z, 0-9, f1-f12, ctrl, ctrl_r, alt, alt_r, shift, shift_r,\n" +
  "meta_l, meta_r, ret, spc, tab, esc, backspace, delete, insert, home, end, pgup, pgdn, up,\n" +
  "down, left, right, minus, equal, bracket_left, bracket_right, backslash, semicolon,\n" +
  "apostrophe, grave_accent, comma, dot, slash, kp_0-kp_9, kp_enter, sysrq, print, pause, ...\n" +
  "Also accepted: enter, return, space, escape, control, del, ins, pageup, pagedown, super, win,\n" +
  "meta, capslock. Case does not matter.";

/** The command's subcommands and their arguments. */
export const spec: CommandSpec = {
  name: "qmp",
  summary: "talk to a running VM over QMP (run, keys, type, screendump, ...)",
  description: "Every subcommand needs the VM running (exit 3 otherwise). QEMU serves one QMP\n" +
    "client at a time: concurrent qvm commands wait their turn (see --timeout).",
  positionals: [],
  options: {},
  subcommands: [
    {
      name: "run",
      summary: "run any QMP command and print its return value as JSON",
      description: "JSON-ARGS is a JSON object of the command's arguments. Output is always\n" +
        "JSON. A QMP error exits 1 with QEMU's error class and description.",
      positionals: [
        vmArg,
        { name: "COMMAND", description: "QMP command, e.g. query-status" },
        { name: "JSON-ARGS", description: "arguments as a JSON object", optional: true },
      ],
      options: { timeout },
      examples: [
        "qvm qmp run web1 query-status",
        `qvm qmp run web1 human-monitor-command '{"command-line": "info block"}'`,
      ],
    },
    {
      name: "keys",
      summary: "press keys together (a chord) with QMP send-key",
      description: "The keys are pressed in order, held, then released in reverse order.\n" +
        "Give them as separate arguments or joined with '-' or '+' (ctrl-alt-delete).\n" +
        KEY_NAMES,
      positionals: [vmArg, { name: "KEY", description: "key name(s)", variadic: true }],
      options: {
        "hold-time": {
          type: "string",
          value: "MS",
          description: "milliseconds to hold the chord (default: QEMU's, 100)",
        },
        timeout,
      },
      examples: ["qvm qmp keys web1 ctrl-alt-f2", "qvm qmp keys web1 ctrl alt delete"],
    },
    {
      name: "type",
      summary: "type text with the US keyboard layout",
      description:
        "One send-key per character, in order: capitals and shifted symbols hold shift,\n" +
        "newline is ret, tab is tab. A character with no US-layout key (é, emoji) is an error\n" +
        "naming it and its position, and then nothing is sent. Text starting with '-' goes\n" +
        "after '--'.",
      positionals: [vmArg, { name: "TEXT", description: "the text to type" }],
      options: {
        "hold-time": {
          type: "string",
          value: "MS",
          description: `milliseconds to hold each key (default ${TYPE_HOLD_MS})`,
        },
        timeout,
      },
      examples: [`qvm qmp type web1 $'root\\n'`, "qvm qmp type web1 -- '-v'"],
    },
    {
      name: "screendump",
      summary: "save the VM's screen to FILE (PNG for .png, else PPM)",
      description: "FILE is written by QEMU, so it is made absolute first; its folder must exist.",
      positionals: [vmArg, { name: "FILE", description: "output image", complete: "file" }],
      options: {
        format: {
          type: "string",
          value: "F",
          description: "png or ppm (default: png when FILE ends in .png, else ppm)",
          complete: ["png", "ppm"],
        },
        timeout,
      },
      examples: ["qvm qmp screendump web1 screen.png"],
    },
    {
      name: "pause",
      summary: "pause the VM's CPUs (QMP stop) and print its status",
      positionals: [vmArg],
      options: { timeout },
      examples: ["qvm qmp pause web1"],
    },
    {
      name: "resume",
      summary: "resume a paused VM (QMP cont) and print its status",
      positionals: [vmArg],
      options: { timeout },
      examples: ["qvm qmp resume web1"],
    },
    {
      name: "device-add",
      summary: "hot-plug a device (QMP device_add)",
      description: "Properties are KEY=VALUE: decimal integers are sent as numbers, true/false\n" +
        "as booleans, everything else (on, off, 0x10, 007, names) as the string given.",
      positionals: [
        vmArg,
        { name: "DRIVER", description: "device model, e.g. virtio-rng-pci" },
        { name: "ID", description: "the new device's id" },
        { name: "KEY=VALUE", description: "device properties", optional: true, variadic: true },
      ],
      options: { timeout },
      examples: [
        "qvm qmp device-add web1 virtio-rng-pci rng0",
        "qvm qmp device-add web1 usb-kbd kbd1 bus=xhci.0",
      ],
    },
    {
      name: "device-del",
      summary: "unplug a device (QMP device_del) and wait until it is gone",
      description: "Waits for QEMU's DEVICE_DELETED event. PCI hot-unplug (ACPI) needs the\n" +
        "guest's cooperation: a guest that ignores the request (or a paused one) leaves the\n" +
        "device in place, and the wait ends in a timeout (exit 2) with the request pending.",
      positionals: [vmArg, { name: "ID", description: "the device's id" }],
      options: {
        timeout: {
          ...timeout,
          description: `seconds to wait for the socket, each reply, and the removal ` +
            `(default ${DEFAULT_TIMEOUT_S})`,
        },
        "no-wait": { type: "boolean", description: "return once QEMU accepted the request" },
      },
      examples: ["qvm qmp device-del web1 rng0"],
    },
  ],
};

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

/** Runs the chosen subcommand. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const timeoutMs = parseTimeout(args.values.timeout, DEFAULT_TIMEOUT_S) * 1000;
  const [vmName, ...rest] = args.positionals;
  const session = <T>(fn: (client: QmpClient, vm: VmRecord) => Promise<T>) =>
    withQmp(ctx, vmName, fn, { timeoutMs });
  switch (args.subcommand) {
    case "run":
      return await runCommand(ctx, rest, { session, timeoutMs });
    case "keys":
      return await sendChord(ctx, rest, { session, timeoutMs, holdTime: args.values["hold-time"] });
    case "type":
      return await typeText(ctx, rest[0], {
        session,
        timeoutMs,
        holdTime: args.values["hold-time"],
      });
    case "screendump":
      return await screendump(ctx, rest[0], { session, timeoutMs, format: args.values.format });
    case "pause":
    case "resume":
      return await setRunState(ctx, args.subcommand, { session, timeoutMs });
    case "device-add":
      return await deviceAdd(ctx, rest, { session, timeoutMs });
    case "device-del":
      return await deviceDel(ctx, rest[0], {
        session,
        timeoutMs,
        wait: args.values["no-wait"] !== true,
      });
    default:
      throw new UsageError(`qmp: unknown subcommand '${args.subcommand}'`);
  }
}

type Session = <T>(fn: (client: QmpClient, vm: VmRecord) => Promise<T>) => Promise<T>;

interface SessionOptions {
  session: Session;
  timeoutMs: number;
}

async function runCommand(
  ctx: Context,
  [command, jsonArgs]: string[],
  { session, timeoutMs }: SessionOptions,
): Promise<number> {
  const qmpArgs = parseJsonArgs(jsonArgs);
  try {
    // What QEMU could not read is refused here, before the VM is looked at.
    encodeRequest({ execute: command, arguments: qmpArgs, id: "qvm-0" });
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(`invalid JSON-ARGS: ${error.message}`);
    throw error;
  }
  const result = await session((client) => call(client, command, { args: qmpArgs, timeoutMs }));
  // `quit` has no reply: QEMU closes the connection instead.
  ctx.outJson(result ?? {});
  return 0;
}

async function sendChord(
  ctx: Context,
  names: string[],
  { session, timeoutMs, holdTime }: SessionOptions & { holdTime: unknown },
): Promise<number> {
  const keys = parseChord(names);
  const hold = parseHoldTime(holdTime);
  const qmpArgs: Record<string, unknown> = { keys: qmpKeys(keys) };
  if (hold !== undefined) qmpArgs["hold-time"] = hold;
  const vm = await session(async (client, vm) => {
    await call(client, "send-key", { args: qmpArgs, timeoutMs });
    return vm;
  });
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, keys, hold_time_ms: hold ?? null });
  else ctx.out(`sent ${keys.join("-")} to ${vm.name}`);
  return 0;
}

async function typeText(
  ctx: Context,
  text: string,
  { session, timeoutMs, holdTime }: SessionOptions & { holdTime: unknown },
): Promise<number> {
  const chords = textKeys(text);
  const hold = parseHoldTime(holdTime, TYPE_HOLD_MS)!;
  const vm = await session(async (client, vm) => {
    // One at a time: QEMU queues each chord's press, hold and release behind the previous one.
    for (const keys of chords) {
      await call(client, "send-key", {
        args: { keys: qmpKeys(keys), "hold-time": hold },
        timeoutMs,
      });
    }
    return vm;
  });
  if (ctx.json) {
    ctx.outJson({ id: vm.id, name: vm.name, characters: chords.length, hold_time_ms: hold });
  } else {
    ctx.out(`typed ${chords.length} character${chords.length === 1 ? "" : "s"} into ${vm.name}`);
  }
  return 0;
}

async function screendump(
  ctx: Context,
  file: string,
  { session, timeoutMs, format }: SessionOptions & { format: unknown },
): Promise<number> {
  const target = screendumpTarget(file, { format });
  const vm = await session(async (client, vm) => {
    await call(client, "screendump", {
      args: { filename: target.file, format: target.format },
      timeoutMs,
    });
    return vm;
  });
  let bytes: number;
  try {
    bytes = (await Deno.stat(target.file)).size;
  } catch (error) {
    throw new QvmError(`QEMU reported success but ${target.file} is missing`, { cause: error });
  }
  if (ctx.json) {
    ctx.outJson({ id: vm.id, name: vm.name, file: target.file, format: target.format, bytes });
  } else ctx.out(target.file);
  return 0;
}

async function setRunState(
  ctx: Context,
  action: "pause" | "resume",
  { session, timeoutMs }: SessionOptions,
): Promise<number> {
  const { vm, state } = await session(async (client, vm) => {
    await call(client, action === "pause" ? "stop" : "cont", { timeoutMs });
    const state = await call<{ status: string; running: boolean }>(client, "query-status", {
      timeoutMs,
    });
    return { vm, state };
  });
  if (ctx.json) {
    ctx.outJson({ id: vm.id, name: vm.name, status: state.status, running: state.running });
  } else {
    ctx.out(`${vm.name}: ${state.status}`);
  }
  return 0;
}

async function deviceAdd(
  ctx: Context,
  [driver, id, ...props]: string[],
  { session, timeoutMs }: SessionOptions,
): Promise<number> {
  const properties = parseProperties(props);
  const vm = await session(async (client, vm) => {
    await call(client, "device_add", { args: { driver, id, ...properties }, timeoutMs });
    return vm;
  });
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, device: { id, driver, properties } });
  else ctx.out(`added ${driver} '${id}' to ${vm.name}`);
  return 0;
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

async function deviceDel(
  ctx: Context,
  id: string,
  { session, timeoutMs, wait }: SessionOptions & { wait: boolean },
): Promise<number> {
  const vm = await session(async (client, vm) => {
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
  });
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, device: id, removed: wait });
  else ctx.out(wait ? `removed '${id}' from ${vm.name}` : `asked ${vm.name} to remove '${id}'`);
  return 0;
}
