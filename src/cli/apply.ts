/** `qvm apply`: merge configs and flags into an existing VM's config, or create the VM if absent. */
import { resolve } from "../path.ts";
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { allConfigFlagOptions, configOverrides, loadVmConfig } from "./_config_flags.ts";
import { applyVm } from "../vm/define.ts";
import { Deadline } from "../vm/env.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "apply",
  summary: "merge configs into a VM's config (creating the VM if absent)",
  description:
    "The VM's current config is the base; the files merge onto it left to right, then flags.\n" +
    "A flag changes a setting: --port replaces the forward to the same guest port (else adds\n" +
    "one), --accel the accelerator; --ssh-key adds keys. A bigger --disk-size grows the root\n" +
    "disk at the next start (it never shrinks). Refused while the VM runs. An invalid result\n" +
    "leaves the VM unchanged. Concurrent applies to one VM take turns under its lock, so every\n" +
    "one of them lands.",
  positionals: [
    { name: "VM", description: "id or name", complete: "vm" },
    {
      name: "CONFIG.yaml",
      description: "config files",
      optional: true,
      variadic: true,
      complete: "file",
    },
  ],
  options: allConfigFlagOptions,
  examples: [
    "qvm apply web1 bigger-disk.yaml",
    "qvm apply web1 --memory 4G",
    "qvm apply web1 --port 2222:22 --disk-size 40G --accel tcg",
  ],
};

/** How long apply waits for another command that holds the VM. */
const APPLY_WAIT_MS = 60_000;

/** Applies the configs; prints the VM's id (or `{id, name, created}` as JSON). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const [target, ...files] = args.positionals;
  const overrides = configOverrides(args.values);
  if (files.length === 0 && Object.keys(overrides).length === 0) {
    throw new UsageError("apply: give a CONFIG.yaml or config flags");
  }
  const { vm, created } = await applyVm(ctx, target, {
    deadline: Deadline.in(APPLY_WAIT_MS),
    configPath: files.length > 0 ? resolve(files[0]) : undefined,
    merge: (base) =>
      base === undefined
        ? loadVmConfig(ctx, files, { name: target, ...overrides })
        : loadVmConfig(ctx, files, overrides, base),
  });
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, created });
  else ctx.out(vm.id);
  return 0;
}
