/** `qvm import-libvirt`: define a qvm VM from a libvirt domain XML (the reverse of `export`). */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { NotFoundError, UsageError } from "../errors.ts";
import { looksLikeId, validateConfig, validateName } from "../config/mod.ts";
import { domainToConfig } from "../libvirt/mod.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "import-libvirt",
  summary: "define a VM from a libvirt domain XML file",
  description:
    "Reads memory, vCPUs, accelerator, machine, kernel boot, file disks, 9p shares and\n" +
    "<qemu:commandline>; anything else in the domain is listed on stderr as not imported. A domain\n" +
    "exported by qvm and unchanged gives back the same QEMU command line. The VM keeps the domain's\n" +
    "uuid as its id when that id is free.",
  positionals: [{ name: "FILE.xml", description: "libvirt domain XML", complete: "file" }],
  options: {
    name: { type: "string", value: "NAME", description: "VM name (default: the domain's name)" },
  },
  examples: [
    "qvm import-libvirt web1.xml",
    "virsh dumpxml web1 > w.xml && qvm import-libvirt w.xml --name web1b",
  ],
};

/** Reads, maps and validates the domain, then inserts one VM; prints its id. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const file = args.positionals[0];
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) throw new NotFoundError(`${file}: no such file`);
    if (err instanceof Deno.errors.IsADirectory) throw new UsageError(`${file}: is a directory`);
    throw new UsageError(`${file}: cannot read: ${(err as Error).message}`);
  }
  let domain;
  try {
    domain = domainToConfig(text);
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(`${file}: ${err.message}`);
    throw err;
  }
  const name = validateName((args.values.name as string | undefined) ?? domain.name);
  const config = validateConfig(domain.config, { warn: (m) => ctx.warn(m) });
  // One line per kind of thing left out, however often the domain repeats it.
  const counts = new Map<string, number>();
  for (const line of domain.notImported) counts.set(line, (counts.get(line) ?? 0) + 1);
  for (const [line, n] of counts) {
    ctx.warn(`not imported from ${file}: ${line}${n > 1 ? ` (${n} times)` : ""}`);
  }
  const uuid = domain.uuid?.toLowerCase();
  const id = uuid !== undefined && looksLikeId(uuid) && !ctx.store.get(uuid) ? uuid : undefined;
  const vm = ctx.store.insert({ id, name, configPath: null, config: { ...config, name } });
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, exact: domain.exact });
  else ctx.out(vm.id);
  return 0;
}
