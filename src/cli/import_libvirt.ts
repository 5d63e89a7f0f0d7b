/** `qvm import-libvirt`: define a qvm VM from a libvirt domain XML (the reverse of `export`). */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { importDomainFile } from "../vm/libvirt.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "import-libvirt",
  summary: "define a VM from a libvirt domain XML file",
  description:
    "Reads memory, vCPUs, accelerator, machine, kernel boot, file disks, 9p shares and\n" +
    "<qemu:commandline>; anything else in the domain is listed on stderr as not imported. A domain\n" +
    "exported by qvm and unchanged gives back the same QEMU command line. The VM keeps the domain's\n" +
    "uuid as its id when that id is free. The file must be a regular file of at most 1 MiB. What\n" +
    "the VM brings onto this host is listed on stderr, one line each: the host paths it reaches,\n" +
    "the commands cloud-init runs in it, SSH keys other than yours, ports open to other hosts. A\n" +
    "path in a system folder (/etc, /usr, /boot, /dev, ...) the guest could write is refused.",
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
  const imported = await importDomainFile(ctx, {
    file: args.positionals[0],
    name: args.values.name as string | undefined,
  });
  for (const warning of imported.warnings) ctx.warn(warning);
  const { vm } = imported;
  if (ctx.json) ctx.outJson({ id: vm.id, name: vm.name, exact: imported.exact });
  else ctx.out(vm.id);
  return 0;
}
