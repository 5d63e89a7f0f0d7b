/**
 * `qvm qmp`: talk to a running VM over QMP — any command (`run`), key chords and typed text, screen
 * dumps, pause and resume, and device hot-plug. Arguments are checked before anything is sent.
 */
import type { Context } from "./context.ts";
import type { CommandSpec, OptionSpec, ParsedArgs, PositionalSpec } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { KEY_NAMES_HELP, parseChord, textKeys } from "../qemu/keys.ts";
import {
  parseHoldTime,
  parseJsonArgs,
  parseProperties,
  screendumpTarget,
} from "../qemu/qmp_args.ts";
import * as qmp from "../vm/qmp_commands.ts";
import { parseTimeout } from "./_options.ts";

const DEFAULT_TIMEOUT_S = 30;
/** How long `type` holds each key down unless `--hold-time` says otherwise. */
const TYPE_HOLD_MS = 20;

const holdTime = (description: string): OptionSpec => ({
  type: "string",
  value: "MS",
  description,
});
const vmArg: PositionalSpec = { name: "VM", description: "id or name", complete: "vm" };

const timeout: OptionSpec = {
  type: "string",
  value: "S",
  description: `seconds to wait for the QMP socket (another client may hold it) and for each ` +
    `reply (default ${DEFAULT_TIMEOUT_S})`,
};

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
        KEY_NAMES_HELP,
      positionals: [vmArg, { name: "KEY", description: "key name(s)", variadic: true }],
      options: {
        "hold-time": holdTime("milliseconds to hold the chord (default: QEMU's, 100)"),
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
        "hold-time": holdTime(`milliseconds to hold each key (default ${TYPE_HOLD_MS})`),
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

/** Runs the chosen subcommand and prints what it did (`qmp run`: always JSON). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const timeoutMs = parseTimeout(args.values.timeout, DEFAULT_TIMEOUT_S) * 1000;
  const [vmName, ...rest] = args.positionals;
  const done = await perform({ ctx, vmName, timeoutMs }, { ...args, positionals: rest });
  if (ctx.json || done.text === undefined) ctx.outJson(done.json);
  else ctx.out(done.text);
  return 0;
}

/** Where a subcommand goes: the command's context, the VM named, and the session's bound. */
type Target = { ctx: Context; vmName: string; timeoutMs: number };
/** What a subcommand prints: `json` with --json, else `text` (none: JSON either way). */
type Done = { json: unknown; text?: string };

/** Runs subcommand `args.subcommand` with the words after VM. */
function perform(on: Target, args: ParsedArgs): Promise<Done> {
  const [first, ...more] = args.positionals;
  const holdTime = args.values["hold-time"];
  switch (args.subcommand) {
    case "run": // `quit` has no reply: QEMU closes the connection instead.
      return qmp.runQmpCommand(on.ctx, on.vmName, {
        ...on,
        command: first,
        args: parseJsonArgs(more[0]),
      }).then((result) => ({ json: result ?? {} }));
    case "keys":
      return sendChord(on, { names: args.positionals, holdTime });
    case "type":
      return typeText(on, { text: first, holdTime });
    case "screendump":
      return dumpScreen(on, { file: first, format: args.values.format });
    case "pause":
    case "resume":
      return setRunState(on, args.subcommand);
    case "device-add":
      return deviceAdd(on, { driver: first, id: more[0], props: more.slice(1) });
    case "device-del":
      return deviceDel(on, { id: first, wait: args.values["no-wait"] !== true });
    default:
      throw new UsageError(`qmp: unknown subcommand '${args.subcommand}'`);
  }
}

async function sendChord(on: Target, o: { names: string[]; holdTime: unknown }): Promise<Done> {
  const keys = parseChord(o.names);
  const hold = parseHoldTime(o.holdTime);
  const vm = await qmp.sendKeys(on.ctx, on.vmName, { ...on, chords: [keys], holdMs: hold });
  return {
    json: { id: vm.id, name: vm.name, keys, hold_time_ms: hold ?? null },
    text: `sent ${keys.join("-")} to ${vm.name}`,
  };
}

async function typeText(on: Target, o: { text: string; holdTime: unknown }): Promise<Done> {
  const chords = textKeys(o.text);
  const hold = parseHoldTime(o.holdTime, TYPE_HOLD_MS)!;
  const vm = await qmp.sendKeys(on.ctx, on.vmName, { ...on, chords, holdMs: hold });
  return {
    json: { id: vm.id, name: vm.name, characters: chords.length, hold_time_ms: hold },
    text: `typed ${chords.length} character${chords.length === 1 ? "" : "s"} into ${vm.name}`,
  };
}

async function dumpScreen(on: Target, o: { file: string; format: unknown }): Promise<Done> {
  const target = screendumpTarget(o.file, { format: o.format });
  const { vm, bytes } = await qmp.screendump(on.ctx, on.vmName, { ...on, ...target });
  return { json: { id: vm.id, name: vm.name, ...target, bytes }, text: target.file };
}

async function setRunState(on: Target, action: "pause" | "resume"): Promise<Done> {
  const { vm, status, running } = await qmp.setCpuState(on.ctx, on.vmName, { ...on, action });
  return { json: { id: vm.id, name: vm.name, status, running }, text: `${vm.name}: ${status}` };
}

async function deviceAdd(
  on: Target,
  { driver, id, props }: { driver: string; id: string; props: string[] },
): Promise<Done> {
  const properties = parseProperties(props);
  const vm = await qmp.addDevice(on.ctx, on.vmName, { ...on, driver, id, properties });
  return {
    json: { id: vm.id, name: vm.name, device: { id, driver, properties } },
    text: `added ${driver} '${id}' to ${vm.name}`,
  };
}

async function deviceDel(on: Target, { id, wait }: { id: string; wait: boolean }): Promise<Done> {
  const vm = await qmp.removeDevice(on.ctx, on.vmName, { ...on, id, wait });
  return {
    json: { id: vm.id, name: vm.name, device: id, removed: wait },
    text: wait ? `removed '${id}' from ${vm.name}` : `asked ${vm.name} to remove '${id}'`,
  };
}
