/** `qvm clone`: a new VM with a stopped VM's config and disks of its own. */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { QvmError, UsageError } from "../errors.ts";
import type { VmConfig } from "../config/mod.ts";
import { Deadline } from "../vm/env.ts";
import { withVm } from "../vm/guard.ts";
import { isLive } from "../vm/observe.ts";
import { configModule } from "../lazy.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "clone",
  summary: "define a new VM with a stopped VM's config and disks of its own",
  description:
    "The new VM gets the config of VM (a new id, name NEW) and disks of its own: a new overlay\n" +
    "of `image:` and of each disk's backing_file, new empty disks otherwise, made at its first\n" +
    "start. Disk contents are not copied. With cloud_init its host name defaults to NEW, so\n" +
    "cloud-init sets it up as a new instance. A disk with a fixed `file:` would be shared, so\n" +
    "such a VM is refused. Prints the new id.",
  positionals: [
    { name: "VM", description: "id or name of a stopped VM", complete: "vm" },
    { name: "NEW", description: "name of the new VM" },
  ],
  options: {},
  examples: ["qvm clone web1 web2"],
};

/** How long clone waits for another command that holds the source VM's lock. */
const CLONE_WAIT_MS = 60_000;

/** The clone's config: the source's with the new name; refused when it would share a disk file. */
function cloneConfig(source: { name: string; config: VmConfig }, name: string): VmConfig {
  for (const disk of source.config.storage) {
    if (disk.type !== "virtfs" && disk.file !== undefined) {
      throw new UsageError(
        `cannot clone '${source.name}': its disk '${disk.name}' is the fixed file ${disk.file}, ` +
          "which the clone would share (use backing_file or image: for disks a clone can copy)",
      );
    }
  }
  return { ...structuredClone(source.config), name };
}

/** Inserts the clone; prints its id (or `{id, name}` as JSON). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const [from, name] = args.positionals;
  const { validateName } = await configModule();
  validateName(name);
  // Under the source's lock, as every other command that reads a VM to act on it: a VM that is
  // live (running, starting, paused, ...) is refused, whatever its row says.
  const source = ctx.store.require(from);
  // A taken name is a mistake in the arguments: said before anything about the source VM.
  if (ctx.store.get(name)) throw new UsageError(`a VM named '${name}' already exists`);
  const vm = await withVm(ctx, source, { deadline: Deadline.in(CLONE_WAIT_MS) }, (seen) => {
    if (isLive(seen.status)) {
      throw new QvmError(`VM '${seen.vm.name}' is ${seen.status}: stop it before clone`);
    }
    const config = cloneConfig(seen.vm, name);
    return Promise.resolve(ctx.store.insert({ name, configPath: seen.vm.configPath, config }));
  });
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, from: source.id });
  else ctx.out(vm.id);
  return 0;
}
