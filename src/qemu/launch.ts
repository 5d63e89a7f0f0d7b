/**
 * The full QEMU command line for a VM: its config's options plus what qvm manages (detached with a
 * pid file, three QMP sockets: commands, status reads, events; serial console on a socket with a
 * log, `-uuid`, `-name`, KVM with TCG fallback). Pure: the same VM and paths give the same argv.
 * A config's `-nographic` means a headless VM here (QEMU refuses it with `-daemonize`): no
 * display, serial on `qvm console`.
 */
import { argumentOption, type VmConfig } from "../config/mod.ts";
import type { VmPaths } from "../vm/paths.ts";
import { configArgv, escapeOptionValue } from "./argv.ts";

/** Traces QEMU's shutdown requests to its log (`-D`), with their cause. */
const SHUTDOWN_TRACE = ["-trace", "enable=qemu_system_shutdown_request"];

/** The binary used when a config names none. */
export const DEFAULT_BINARY = "qemu-system-x86_64";

function optionsIn(config: VmConfig): Set<string> {
  const seen = new Set(config.arguments.map(argumentOption));
  for (const arg of config.args) if (arg.startsWith("-")) seen.add(arg.replace(/^-+/, ""));
  return seen;
}

/** argv (binary first) to launch VM `id` named `name` with `config`, files at `paths`. */
export function launchArgv(
  vm: { id: string; name: string; config: VmConfig },
  paths: VmPaths,
): string[] {
  const given = optionsIn(vm.config);
  // The traced shutdown request tells, after QEMU is gone, why it ended (guest, QMP quit, signal).
  const argv = [vm.config.binary ?? DEFAULT_BINARY, "-D", paths.qemuLog, ...SHUTDOWN_TRACE];
  argv.push(...configArgv(vm.config, { diskDir: paths.diskDir }));
  argv.push("-name", escapeOptionValue(vm.name), "-uuid", vm.id);
  argv.push("-daemonize", "-pidfile", paths.pidFile);
  argv.push("-qmp", `unix:${escapeOptionValue(paths.qmpSocket)},server=on,wait=off`);
  argv.push("-qmp", `unix:${escapeOptionValue(paths.monitorSocket)},server=on,wait=off`);
  argv.push("-qmp", `unix:${escapeOptionValue(paths.eventSocket)},server=on,wait=off`);
  if (!given.has("serial")) {
    argv.push(
      "-chardev",
      `socket,id=qvm-serial,path=${escapeOptionValue(paths.serialSocket)},server=on,wait=off,` +
        `logfile=${escapeOptionValue(paths.serialLog)},logappend=on`,
      "-serial",
      "chardev:qvm-serial",
    );
  }
  if (!given.has("display") && vm.config.display === undefined) {
    argv.push("-display", "none");
  }
  const accelerated = given.has("accel") || given.has("enable-kvm") ||
    vm.config.arguments.some((a) =>
      typeof a === "object" && argumentOption(a) === "machine" &&
      JSON.stringify(a).includes("accel")
    );
  if (!accelerated) argv.push("-accel", "kvm", "-accel", "tcg");
  return argv;
}

/** `argv` as one shell-pasteable line (for `start --dry-run`). */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)
    .join(" ");
}
