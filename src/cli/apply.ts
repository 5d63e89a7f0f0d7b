/** `qvm apply`: merge configs and flags into an existing VM's config, or create the VM if absent. */
import { resolve } from "node:path";
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { QvmError, UsageError } from "../errors.ts";
import { configFlagOptions, configFromFlags, loadVmConfig } from "./_config_flags.ts";
import { observe } from "../vm/observe.ts";
import { acquireLock } from "../vm/lock.ts";
import { vmPaths } from "../vm/paths.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "apply",
  summary: "merge configs into a VM's config (creating the VM if absent)",
  description:
    "The VM's current config is the base; the files merge onto it left to right, then flags.\n" +
    "Refused while the VM runs. An invalid result leaves the VM unchanged.",
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
  options: configFlagOptions,
  examples: ["qvm apply web1 bigger-disk.yaml", "qvm apply web1 --memory 4G"],
};

/** Applies the configs; prints the VM's id (or `{id, name, created}` as JSON). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const [target, ...files] = args.positionals;
  const overrides = configFromFlags(args.values);
  if (files.length === 0 && Object.keys(overrides).length === 0) {
    throw new UsageError("apply: give a CONFIG.yaml or config flags");
  }
  const existing = ctx.store.get(target);
  if (!existing) {
    const config = await loadVmConfig(ctx, files, { name: target, ...overrides });
    const name = config.name ?? target;
    const vm = ctx.store.insert({
      name,
      configPath: files.length > 0 ? resolve(files[0]) : null,
      config: { ...config, name },
    });
    if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, created: true });
    else ctx.out(vm.id);
    return 0;
  }
  const lock = await acquireLock(vmPaths(ctx.dirs, existing.id).lockFile, {
    timeoutMs: 10_000,
    what: `VM '${existing.name}'`,
  });
  try {
    const { status } = await observe(ctx, ctx.store.require(existing.id), {
      qmp: false,
      locked: true,
    });
    if (status === "running" || status === "starting" || status === "stopping") {
      throw new QvmError(`VM '${existing.name}' is ${status}: stop it before apply`);
    }
    const config = await loadVmConfig(ctx, files, overrides, existing.config);
    ctx.store.updateConfig(existing.id, config, {
      configPath: files.length > 0 ? resolve(files[0]) : existing.configPath,
    });
  } finally {
    lock.release();
  }
  const vm = ctx.store.require(existing.id);
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, created: false });
  else ctx.out(vm.id);
  return 0;
}
