/**
 * The config module: load YAML files, merge them, validate the result into a `VmConfig`, resolve
 * its paths. Other folders import from here only; QEMU's argv is built in `qemu/argv.ts`.
 * Re-exports only.
 */
export { configInput, loadConfigs } from "./compose.ts";

export type {
  ArgumentItem,
  ArgValue,
  DiskInterface,
  DiskStorage,
  StorageItem,
  VirtfsStorage,
  VmConfig,
} from "./types.ts";
export {
  argumentId,
  argumentOption,
  bareFlag,
  FLAG_OPTIONS,
  SHORTHAND_OPTIONS,
  SINGLETON_OPTIONS,
  stripDashes,
} from "./arguments.ts";
export { COMMAND_KEYS } from "./_checks.ts";
export { type CloudInitConfig, isPublicKeyLine, isSystemAccount } from "./cloud_init.ts";
export {
  autoSpec,
  checkForwardsFree,
  formatForward,
  hostPortFree,
  type NetworkConfig,
  parsePortSpec,
  type PortForward,
  type PortHolder,
  udpPortsBound,
} from "./network.ts";
export { escapeOptionValue, splitOptionText } from "./qemu_opts.ts";
export { diskFile, PATH_KEYS, PATH_OPTIONS, SYSTEM_FOLDERS, systemFolderOf } from "./paths.ts";
export {
  diskSizeOf,
  IMAGE_FORMATS,
  type ImageFormat,
  imageFormatOf,
  imageOf,
  pinnedImageFormat,
} from "./image.ts";
export {
  loadConfigFile,
  type LoadOptions,
  MAX_CONFIG_BYTES,
  readDataFile,
  readSmallText,
  type SmallTextOptions,
} from "./load.ts";
export { mergeConfigs, mergeFlags } from "./merge.ts";
export { looksLikeId, NAME_PATTERN, storageId, validateName } from "./name.ts";
export { CONFIG_KEYS, type ConfigKey, DISK_ITEM_KEYS, VIRTFS_ITEM_KEYS } from "./keys.ts";
export { MAX_MEMORY, sizeBytes } from "./size.ts";
export { validateConfig, type ValidateOptions } from "./validate.ts";
