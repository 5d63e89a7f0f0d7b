/**
 * The command table: names and one-line summaries, with each command's module loaded only when
 * that command runs (start-up cost stays at what the chosen command imports).
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";

/** What each `src/cli/<command>.ts` exports. */
export interface CommandModule {
  spec: CommandSpec;
  run(ctx: Context, args: ParsedArgs): Promise<number | void> | number | void;
  /** True for a command that reports unsafe data/runtime dirs itself instead of being refused. */
  reportsUnsafeDirs?: boolean;
}

/** One row of the table. */
export interface CommandEntry {
  name: string;
  summary: string;
  /** The command only reads the database, so it works on a read-only (or full) data dir. */
  readOnly?: boolean;
  load(): Promise<CommandModule>;
}

/** Every command, in the order `qvm --help` lists them. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: "add",
    summary: "define a new VM from YAML configs and flags",
    load: () => import("./add.ts"),
  },
  {
    name: "apply",
    summary: "merge configs into a VM (creating it if absent)",
    load: () => import("./apply.ts"),
  },
  {
    name: "ls",
    summary: "list VMs and their real status",
    readOnly: true,
    load: () => import("./ls.ts"),
  },
  {
    name: "status",
    summary: "show one VM's status",
    readOnly: true,
    load: () => import("./status.ts"),
  },
  {
    name: "info",
    summary: "show a VM's configuration summary",
    readOnly: true,
    load: () => import("./info.ts"),
  },
  {
    name: "inspect",
    summary: "show everything about a VM, process included",
    readOnly: true,
    load: () => import("./inspect.ts"),
  },
  {
    name: "start",
    summary: "start a VM (QEMU detached, QMP on a unix socket)",
    load: () => import("./start.ts"),
  },
  {
    name: "stop",
    summary: "stop a VM gracefully, escalating until it is gone",
    load: () => import("./stop.ts"),
  },
  {
    name: "logs",
    summary: "print a VM's serial console log",
    readOnly: true,
    load: () => import("./logs.ts"),
  },
  {
    name: "console",
    summary: "attach to a VM's serial console (Ctrl-] detaches)",
    readOnly: true,
    load: () => import("./console.ts"),
  },
  {
    name: "ssh",
    summary: "open a shell or run a command in a VM over SSH",
    load: () => import("./ssh.ts"),
  },
  {
    name: "exec",
    summary: "run a command in a VM through the guest agent",
    load: () => import("./exec.ts"),
  },
  {
    name: "ip",
    summary: "show a VM's IP addresses (from the guest agent)",
    readOnly: true,
    load: () => import("./ip.ts"),
  },
  {
    name: "ports",
    summary: "show a VM's port forwards (host -> guest)",
    readOnly: true,
    load: () => import("./ports.ts"),
  },
  {
    name: "rm",
    summary: "remove VMs (storage kept unless --delete-storage)",
    load: () => import("./rm.ts"),
  },
  {
    name: "qmp",
    summary: "talk to a running VM over QMP (run, keys, type, screendump, ...)",
    readOnly: true,
    load: () => import("./qmp.ts"),
  },
  {
    name: "snapshot",
    summary: "create, load, list or delete disk snapshots (offline or live)",
    load: () => import("./snapshot.ts"),
  },
  {
    name: "storage",
    summary: "list, verify, or find orphaned disk images",
    readOnly: true,
    load: () => import("./storage.ts"),
  },
  {
    name: "export",
    summary: "export a VM as libvirt domain XML, or define it at a libvirt URI",
    readOnly: true,
    load: () => import("./export.ts"),
  },
  {
    name: "import-libvirt",
    summary: "define a VM from a libvirt domain XML file",
    load: () => import("./import_libvirt.ts"),
  },
  {
    name: "cleanup",
    summary: "remove stale sockets, pid files and locks; settle dead VMs",
    load: () => import("./cleanup.ts"),
  },
  {
    name: "doctor",
    summary: "check QEMU, KVM, folders, the database and stray QEMU processes",
    load: () => import("./doctor.ts"),
  },
  {
    name: "completions",
    summary: "print shell completions (bash, zsh, fish)",
    load: () => import("./completions.ts"),
  },
];

/** The entry for `name`, or undefined. */
export function findCommand(name: string): CommandEntry | undefined {
  return COMMANDS.find((c) => c.name === name);
}
