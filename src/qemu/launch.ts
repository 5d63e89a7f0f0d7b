/**
 * The full QEMU command line for a VM: its config's options plus what qvm manages (detached with a
 * pid file, three QMP sockets: commands, status reads, events; serial console on a socket with a
 * log, `-uuid`, `-name`, KVM with TCG fallback). Pure: the same VM and paths give the same argv.
 * A config's `-nographic` means a headless VM here (QEMU refuses it with `-daemonize`): no
 * display, serial on `qvm console`.
 */
import { argumentOption, escapeOptionValue, type VmConfig } from "../config/mod.ts";
import type { VmPaths } from "../vm_files.ts";
import { configArgv, isStdioItem, passedArgs } from "./argv.ts";

/**
 * What QEMU traces to its log (`-D`): its shutdown requests, with their cause (why a QEMU that is
 * gone ended), and every run-state change, whoever caused it (`ls` reads a VM's run state there
 * instead of asking each QEMU over QMP).
 */
const TRACES = [
  ...["-trace", "enable=qemu_system_shutdown_request"],
  ...["-trace", "enable=runstate_set"],
];

/** The binary used when a config names none. */
export const DEFAULT_BINARY = "qemu-system-x86_64";

/** The options a config passes to QEMU (left-out items such as `-serial stdio` do not count). */
function optionsIn(config: VmConfig): Set<string> {
  const passed = new Set(config.arguments.filter((a) => !isStdioItem(a)).map(argumentOption));
  for (const arg of passedArgs(config.args)) {
    if (arg.startsWith("-")) passed.add(arg.replace(/^-+/, ""));
  }
  return passed;
}

const MACHINE = new Set(["machine", "M"]);

/**
 * True when `-machine` (or `-M`) sets `accel=`, in `arguments` or raw `args`: QEMU refuses
 * `-accel` beside it ("The -accel and "-machine accel=" options are incompatible").
 */
function machineSetsAccel(config: VmConfig): boolean {
  const inArguments = config.arguments.some((a) =>
    typeof a === "object" && MACHINE.has(argumentOption(a)) && JSON.stringify(a).includes("accel")
  );
  return inArguments ||
    config.args.some((arg, i) =>
      /^--?(machine|M)$/.test(arg) && /(^|,)accel=/.test(config.args[i + 1] ?? "")
    );
}

/**
 * True when the config picks QEMU's accelerator itself (`accel`, `enable-kvm`, or
 * `-machine accel=`); otherwise qvm adds KVM with a TCG fallback.
 */
export function choosesAccel(config: VmConfig): boolean {
  const given = optionsIn(config);
  return given.has("accel") || given.has("enable-kvm") || machineSetsAccel(config);
}

/** argv (binary first) to launch VM `id` named `name` with `config`, files at `paths`. */
export function launchArgv(
  vm: { id: string; name: string; config: VmConfig },
  paths: VmPaths,
): string[] {
  const given = optionsIn(vm.config);
  const argv = [vm.config.binary ?? DEFAULT_BINARY, "-D", paths.qemuLog, ...TRACES];
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
  if (!choosesAccel(vm.config)) argv.push("-accel", "kvm", "-accel", "tcg");
  return argv;
}
