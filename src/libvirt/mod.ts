/**
 * Handing qvm VMs to libvirt and taking libvirt domains in: domain XML building and reading (pure),
 * what an imported domain brings onto this host, the `virsh` runner, and carrying disks into a
 * storage pool. Loaded only by `export` and `import-libvirt`.
 */
export {
  archOf,
  type DomainExport,
  type DomainOptions,
  domainXml,
  QEMU_NS,
  QVM_NS,
} from "./export.ts";
export { domainToConfig, type ImportedDomain } from "./import.ts";
export {
  type Exposure,
  exposureOf,
  type HostPath,
  refuseSystemWrites,
  shortKey,
} from "./exposure.ts";
export {
  checkDomainFree,
  defineDomain,
  domainDefined,
  findVirsh,
  type PoolTarget,
  startDomain,
} from "./virsh.ts";
export {
  type CopiedStorage,
  type CopyProgress,
  copyStorage,
  deletedNote,
  deleteVolumes,
  type DiskCopy,
} from "./copy.ts";
