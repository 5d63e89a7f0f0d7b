/** `qvm inspect`: everything qvm knows about a VM, its QEMU process included. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { observe } from "../vm/observe.ts";
import { vmPaths } from "../vm_files.ts";
import { readCmdline } from "../qemu/process.ts";
import { summarize } from "../vm/summary.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "inspect",
  summary: "show everything about a VM, process included",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {},
  examples: ["qvm inspect web1 --json"],
};

/** Prints a JSON document (the same with or without --json: it is for reading closely). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const seen = await observe(ctx, ctx.store.require(args.positionals[0]));
  const { vm } = seen;
  const paths = vmPaths(ctx.dirs, vm.id);
  const alive = seen.status !== "stopped" && seen.status !== "failed" && vm.pid !== null;
  ctx.outJson({
    ...summarize(ctx.dirs, vm),
    status: seen.status,
    qemu_status: seen.qemuStatus ?? null,
    stop_reason: vm.stopReason,
    created_at: vm.createdAt,
    updated_at: vm.updatedAt,
    created_files: vm.createdFiles,
    config: vm.config,
    process: {
      pid: alive ? vm.pid : null,
      alive,
      cmdline: alive && vm.pid ? readCmdline(vm.pid) ?? null : null,
      qmp_socket: paths.qmpSocket,
      monitor_socket: paths.monitorSocket,
      serial_socket: paths.serialSocket,
      pid_file: paths.pidFile,
      serial_log: paths.serialLog,
      qemu_log: paths.qemuLog,
    },
  });
  return 0;
}
