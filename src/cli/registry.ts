/**
 * The command table: names and one-line summaries, with each command's module loaded only when
 * that command runs (start-up cost stays at what the chosen command imports).
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { lazyImport } from "../lazy.ts";

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

/** Every command, in the order `qvm --help` lists them. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: "add",
    summary: "define a new VM from YAML configs and flags",
    load: () => importCommand("add.ts"),
  },
  {
    name: "launch",
    summary: "define a VM from an image file, URL or catalog name, start it, wait for SSH",
    load: () => importCommand("launch.ts"),
  },
  {
    name: "apply",
    summary: "merge configs into a VM (creating it if absent)",
    load: () => importCommand("apply.ts"),
  },
  {
    name: "ls",
    summary: "list VMs and their real status",
    readOnly: true,
    load: () => importCommand("ls.ts"),
  },
  {
    name: "status",
    summary: "show one VM's status",
    readOnly: true,
    load: () => importCommand("status.ts"),
  },
  {
    name: "info",
    summary: "show a VM's configuration summary",
    readOnly: true,
    load: () => importCommand("info.ts"),
  },
  {
    name: "inspect",
    summary: "show everything about a VM, process included",
    readOnly: true,
    load: () => importCommand("inspect.ts"),
  },
  {
    name: "start",
    summary: "start a VM (QEMU detached, QMP on a unix socket)",
    load: () => importCommand("start.ts"),
  },
  {
    name: "stop",
    summary: "stop a VM gracefully, escalating until it is gone",
    load: () => importCommand("stop.ts"),
  },
  {
    name: "restart",
    summary: "stop a VM (escalating as stop does) and start it again, under one lock",
    load: () => importCommand("restart.ts"),
  },
  {
    name: "wait",
    summary: "wait until a VM is running, stopped, answers (ssh, agent) or prints a text",
    readOnly: true,
    load: () => importCommand("wait.ts"),
  },
  {
    name: "events",
    summary: "print a running VM's QMP events until it stops",
    readOnly: true,
    load: () => importCommand("events.ts"),
  },
  {
    name: "logs",
    summary: "print a VM's serial console log",
    readOnly: true,
    load: () => importCommand("logs.ts"),
  },
  {
    name: "console",
    summary: "attach to a VM's serial console (Ctrl-] detaches)",
    readOnly: true,
    load: () => importCommand("console.ts"),
  },
  {
    name: "ssh",
    summary: "open a shell or run a command in a VM over SSH",
    load: () => importCommand("ssh.ts"),
  },
  {
    name: "ssh-config",
    summary: "print OpenSSH config blocks for VMs (ssh -F, scp, rsync, editors)",
    load: () => importCommand("ssh_config.ts"),
  },
  {
    name: "cp",
    summary: "copy files and folders between the host and a running VM",
    load: () => importCommand("cp.ts"),
  },
  {
    name: "exec",
    summary: "run a command in a VM through the guest agent",
    load: () => importCommand("exec.ts"),
  },
  {
    name: "ip",
    summary: "show a VM's IP addresses (from the guest agent)",
    readOnly: true,
    load: () => importCommand("ip.ts"),
  },
  {
    name: "ports",
    summary: "show a VM's port forwards (host -> guest)",
    readOnly: true,
    load: () => importCommand("ports.ts"),
  },
  {
    name: "clone",
    summary: "define a new VM with a stopped VM's config and disks of its own",
    load: () => importCommand("clone.ts"),
  },
  {
    name: "rm",
    summary: "remove VMs (storage kept unless --delete-storage)",
    load: () => importCommand("rm.ts"),
  },
  {
    name: "qmp",
    summary: "talk to a running VM over QMP (run, keys, type, screendump, ...)",
    readOnly: true,
    load: () => importCommand("qmp.ts"),
  },
  {
    name: "snapshot",
    summary: "create, load, list or delete disk snapshots (offline or live)",
    readOnlySubcommands: ["list"],
    load: () => importCommand("snapshot.ts"),
  },
  {
    name: "storage",
    summary: "list, verify, or find orphaned disk images",
    readOnly: true,
    load: () => importCommand("storage.ts"),
  },
  {
    name: "image",
    summary: "list, pull or remove cached base images; show the image catalog",
    readOnlySubcommands: ["ls", "catalog"],
    load: () => importCommand("image.ts"),
  },
  {
    name: "export",
    summary: "export a VM as libvirt domain XML, or define it at a libvirt URI",
    readOnly: true,
    load: () => importCommand("export.ts"),
  },
  {
    name: "import-libvirt",
    summary: "define a VM from a libvirt domain XML file",
    load: () => importCommand("import_libvirt.ts"),
  },
  {
    name: "cleanup",
    summary: "remove stale sockets, pid files and locks; settle dead VMs",
    load: () => importCommand("cleanup.ts"),
  },
  {
    name: "doctor",
    summary: "check QEMU, KVM, folders, the database and stray QEMU processes",
    load: () => importCommand("doctor.ts"),
  },
  {
    name: "completions",
    summary: "print shell completions (bash, zsh, fish)",
    load: () => importCommand("completions.ts"),
  },
];

/** The entry for `name`, or undefined. */
export function findCommand(name: string): CommandEntry | undefined {
  return COMMANDS.find((c) => c.name === name);
}
