/** `qvm clone`: a new VM with a stopped VM's config and copies of its disks (or new ones). */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { UsageError } from "../errors.ts";
import { Deadline } from "../vm/env.ts";
import { cloneVm } from "../vm/clone.ts";
import { configModule } from "./_lazy.ts";
import { progressModule } from "./_format.ts";
import { quietOption } from "./_options.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "clone",
  summary: "define a new VM with a stopped VM's config and copies of its disks",
  description:
    "The new VM gets the config of VM (a new id, name NEW) and copies of its disks as they are\n" +
    "now, in its own disk folder: sparse, and an overlay (of `image:` or a backing_file) stays an\n" +
    "overlay of the same base. Internal snapshots are not copied. --linked copies nothing: new\n" +
    "overlays of the bases and new empty disks, made at its first start. No disk is shared\n" +
    "(virtfs shares are: they are host folders): a writable file named in arguments/args is\n" +
    "refused, and fixed host ports become auto (said on stderr). With cloud_init its host name\n" +
    "defaults to NEW. Prints the new id.",
  positionals: [
    { name: "VM", description: "id or name of a stopped VM", complete: "vm" },
    { name: "NEW", description: "name of the new VM" },
  ],
  options: {
    linked: { type: "boolean", description: "copy no disks: new overlays and empty disks" },
    quiet: quietOption,
  },
  examples: ["qvm clone web1 web2", "qvm clone web1 web3 --linked"],
};

/** How long clone waits for another command that holds the source VM's lock. */
const CLONE_WAIT_MS = 60_000;

/** Clones; prints the new id (or `{id, name, from, copied}` as JSON). */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const [from, name] = args.positionals;
  const { validateName, formatForward } = await configModule();
  validateName(name);
  const source = ctx.store.require(from);
  // A taken name is a mistake in the arguments: said before anything about the source VM.
  if (ctx.store.get(name)) throw new UsageError(`a VM named '${name}' already exists`);
  const { Progress, formatSeconds } = await progressModule();
  const progress = new Progress(ctx, { quiet: args.values.quiet === true });
  const began = Date.now();
  const cloned = await cloneVm(ctx, source, {
    name,
    linked: args.values.linked === true,
    deadline: Deadline.in(CLONE_WAIT_MS),
    onProgress: (p) =>
      progress.show(() =>
        `copying disk '${p.disk}' (${p.index} of ${p.count}): ${p.percent.toFixed(0)}% · ` +
        progress.dim(formatSeconds(Date.now() - began))
      ),
  }).finally(() => progress.done());
  for (const forward of cloned.autoPorts) {
    ctx.warn(
      `forward ${formatForward(forward)} has a fixed host port, which '${source.name}' uses: ` +
        `'${name}' gets auto:${forward.guest} (a free port at its start)`,
    );
  }
  if (ctx.json) {
    ctx.outJson({ id: cloned.vm.id, name: cloned.vm.name, from: source.id, copied: cloned.copied });
  } else ctx.out(cloned.vm.id);
  return 0;
}
