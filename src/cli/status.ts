/** `qvm status`: one VM's real status, reconciled with its QEMU process. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { isLive, observe, thawedWarning } from "../vm/observe.ts";
import { paintStatus } from "./_format.ts";
import { lazyImport } from "../lazy.ts";
import type { VmBrief } from "../state/mod.ts";

/**
 * What `status --json` shows of a cloud VM, loaded only for one. The loader lives here, with the
 * one command that uses it, so that `status` loads no module of its own for it at start-up.
 */
export const cloudStatusModule = () =>
  lazyImport<typeof import("../cloud/status.ts")>("src/cloud/status.ts");

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "status",
  summary: "show one VM's status",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {},
  examples: ["qvm status web1", "qvm status web1 --json"],
};

/** Prints the status (and how the VM last ended), or a JSON object. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const seen = await observe(ctx, ctx.store.require(args.positionals[0]));
  const { vm } = seen;
  if (seen.thawed) ctx.warn(thawedWarning(vm.name));
  const live = isLive(seen.status);
  if (ctx.json) {
    ctx.outJson({
      id: vm.id,
      name: vm.name,
      status: seen.status,
      pid: live ? vm.pid : null,
      qemu_status: seen.qemuStatus ?? null,
      stop_reason: vm.stopReason,
      ...(vm.config.network || vm.config.cloud_init || vm.config.guest_agent
        ? await (await cloudStatusModule()).cloudStatus(ctx.dirs, vm, live)
        : {}),
    });
    return 0;
  }
  ctx.out(statusLine(vm, seen.status, live));
  return 0;
}

/** The line `status` prints: name and status, then the pid of a live VM or how it last ended. */
export function statusLine(
  vm: Pick<VmBrief, "name" | "pid" | "stopReason">,
  status: string,
  live: boolean,
): string {
  const line = `${vm.name}: ${paintStatus(status)}`;
  if (live && vm.pid) return `${line} (pid ${vm.pid})`;
  return vm.stopReason ? `${line} (last ended: ${vm.stopReason})` : line;
}
