/**
 * Handing qvm VMs to libvirt and taking libvirt domains in: domain XML building and reading (pure)
 * and the `virsh` runner. Loaded only by `export` and `import-libvirt`.
 */
export {
  archOf,
  type DomainExport,
  type DomainOptions,
  domainXml,
  QEMU_NS,
  QVM_NS,
} from "./domain.ts";
export { domainToConfig, type ImportedDomain } from "./parse.ts";
export { defineDomain, findVirsh, startDomain } from "./virsh.ts";
