/**
 * The command table: names and one-line summaries, with each command's module loaded only when
 * that command runs (start-up cost stays at what the chosen command imports).
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { lazyImport } from "../lazy.ts";

/** The help text formatter, loaded only when `--help` asks for it. */
export const helpModule = () => lazyImport<typeof import("./_help.ts")>("src/cli/_help.ts");

/** What each `src/cli/<command>.ts` exports. */
export interface CommandModule {
  spec: CommandSpec;
  run(ctx: Context, args: ParsedArgs): Promise<number | void> | number | void;
  /** True for a command that reports unsafe data/runtime dirs itself instead of being refused. */
  reportsUnsafeDirs?: boolean;
  /** Its own argument parser, for a command that passes options on to another program. */
  parse?(args: readonly string[]): ParsedArgs;
}

/** One row of the table. */
export interface CommandEntry {
  name: string;
  summary: string;
  /** The command only reads the database, so it works on a read-only (or full) data dir. */
  readOnly?: boolean;
  /** Subcommands that only read the database, of a command whose others write it. */
  readOnlySubcommands?: readonly string[];
  load(): Promise<CommandModule>;
}

/**
 * Loads `src/cli/<file>` through `lazyImport`, so each command pays only for its own modules,
 * not for every other command's (the YAML parser included).
 */
function importCommand(file: `${string}.ts`): Promise<CommandModule> {
  return lazyImport<CommandModule>(`src/cli/${file}`);
}

/** The table's row for command `name`: its module is `src/cli/<name>.ts` (`-` written `_`). */
function command(
  name: string,
  summary: string,
  flags: Pick<CommandEntry, "readOnly" | "readOnlySubcommands"> = {},
): CommandEntry {
  return { name, summary, ...flags, load: () => importCommand(`${name.replaceAll("-", "_")}.ts`) };
}

/** Every command, in the order `qvm --help` lists them. */
export const COMMANDS: readonly CommandEntry[] = [
  command("add", "define a new VM from YAML configs and flags"),
  command("launch", "define a VM from an image file, URL or catalog name, start it, wait for SSH"),
  command("apply", "merge configs into a VM (creating it if absent)"),
  command("ls", "list VMs and their real status", { readOnly: true }),
  command("status", "show one VM's status", { readOnly: true }),
  command("info", "show a VM's configuration summary", { readOnly: true }),
  command("inspect", "show everything about a VM, process included", { readOnly: true }),
  command("start", "start a VM (QEMU detached, QMP on a unix socket)"),
  command("stop", "stop a VM gracefully, escalating until it is gone"),
  command("restart", "stop a VM (escalating as stop does) and start it again, under one lock"),
  command("wait", "wait until a VM is running, stopped, answers (ssh, agent) or prints a text", {
    readOnly: true,
  }),
  command("events", "print a running VM's QMP events until it stops", { readOnly: true }),
  command("logs", "print a VM's serial console log", { readOnly: true }),
  command("console", "attach to a VM's serial console (Ctrl-] detaches)", { readOnly: true }),
  command("ssh", "open a shell or run a command in a VM over SSH"),
  command("ssh-config", "print OpenSSH config blocks for VMs (ssh -F, scp, rsync, editors)"),
  command("cp", "copy files and folders between the host and a running VM"),
  command("exec", "run a command in a VM through the guest agent"),
  command("ip", "show a VM's IP addresses (from the guest agent)", { readOnly: true }),
  command("ports", "show a VM's port forwards (host -> guest)", { readOnly: true }),
  command("clone", "define a new VM with a stopped VM's config and disks of its own"),
  command("rm", "remove VMs (storage kept unless --delete-storage)"),
  command("qmp", "talk to a running VM over QMP (run, keys, type, screendump, ...)", {
    readOnly: true,
  }),
  command("snapshot", "create, load, list or delete disk snapshots (offline or live)", {
    readOnlySubcommands: ["list"],
  }),
  command("storage", "list, verify, or find orphaned disk images", { readOnly: true }),
  command("image", "list, pull or remove cached base images; show the image catalog", {
    readOnlySubcommands: ["ls", "catalog"],
  }),
  command("export", "export a VM as libvirt domain XML, or define it at a libvirt URI", {
    readOnly: true,
  }),
  command("import-libvirt", "define a VM from a libvirt domain XML file"),
  command("cleanup", "remove stale sockets, pid files and locks; settle dead VMs"),
  command("doctor", "check QEMU, KVM, folders, the database and stray QEMU processes"),
  command("completions", "print shell completions (bash, zsh, fish)"),
];

/** The entry for `name`, or undefined. */
export function findCommand(name: string): CommandEntry | undefined {
  return COMMANDS.find((c) => c.name === name);
}
