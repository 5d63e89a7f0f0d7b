/** `qvm add`: define a new VM from YAML configs (merged left to right) and flags on top. */
import { resolve } from "../path.ts";
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { allConfigFlagOptions, configOverrides, loadVmConfig } from "./_config_flags.ts";
import { defineVm } from "../vm/define.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "add",
  summary: "define a new VM from YAML configs and flags; prints its id",
  description:
    "Several configs merge left to right, then flags on top. The name is --name, else the config's\n" +
    "`name:`, else vm-<8 hex>. Nothing is written unless the whole config is valid.",
  positionals: [{
    name: "CONFIG.yaml",
    description: "VM config files (maqet-compatible YAML)",
    optional: true,
    variadic: true,
    complete: "file",
  }],
  options: {
    ...allConfigFlagOptions,
    empty: { type: "boolean", description: "define a VM with an empty config" },
  },
  examples: [
    "qvm add vm.yaml --name web1",
    "qvm add --empty --name scratch --memory 1G",
    "qvm add --image base.qcow2 --port auto:22 --user dev --disk-size 20G --memory 1G",
  ],
};

/** Validates everything, then inserts one row; prints the new id (or `{id, name}` as JSON). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const overrides = configOverrides(args.values);
  if (args.positionals.length === 0 && !args.values.empty && Object.keys(overrides).length === 0) {
    throw new UsageError("add: give a CONFIG.yaml, config flags, or --empty");
  }
  const config = await loadVmConfig(ctx, args.positionals, overrides);
  const configPath = args.positionals.length > 0 ? resolve(args.positionals[0]) : null;
  const vm = await defineVm(ctx, config, { configPath });
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name });
  else ctx.out(vm.id);
  return 0;
}
