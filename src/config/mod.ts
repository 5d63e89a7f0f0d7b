/**
 * The config module: load YAML files, merge them, validate the result into a `VmConfig`, resolve
 * its paths. Other folders import from here only; QEMU's argv is built in `qemu/argv.ts`.
 */

import { loadConfigFile } from "./load.ts";
import { mergeConfigs, nameStorageByPosition } from "./merge.ts";
import { validateConfig } from "./validate.ts";
import type { VmConfig } from "./types.ts";

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
  SHORTHAND_OPTIONS,
  SINGLETON_OPTIONS,
  stripDashes,
} from "./arguments.ts";
export { COMMAND_KEYS } from "./_checks.ts";
export { type CloudInitConfig, isPublicKeyLine } from "./cloud_init.ts";
export {
  checkForwardsFree,
  formatForward,
  type NetworkConfig,
  type PortForward,
} from "./network.ts";
export { diskFile, PATH_KEYS, PATH_OPTIONS, SYSTEM_FOLDERS, systemFolderOf } from "./paths.ts";
export { loadConfigFile, type LoadOptions, MAX_CONFIG_BYTES } from "./load.ts";
export { mergeConfigs } from "./merge.ts";
export { looksLikeId, NAME_PATTERN, validateName } from "./name.ts";
export { validateConfig, type ValidateOptions } from "./validate.ts";

/**
 * Loads config files and merges them left to right; unnamed storage items are then named
 * `storage<i>` by their place in that list, and the result merges onto `base` (a VM's current
 * config, for `apply`, so applying the same files again changes nothing). `overrides` (CLI flags
 * such as `{name, memory, cpu, binary}`; `undefined` means not given) go on top, and the result
 * is validated. Nothing is written: callers persist only what this
 * returns, so a bad config changes nothing.
 */
export async function loadConfigs(
  paths: string[],
  overrides: Record<string, unknown>,
  options?: { warn?: (message: string) => void; base?: VmConfig },
): Promise<VmConfig> {
  let files: Record<string, unknown> = {};
  for (const path of paths) files = mergeConfigs(files, await loadConfigFile(path, options));
  const base = options?.base ? { ...options.base } : {};
  const merged = mergeConfigs(mergeConfigs(base, nameStorageByPosition(files)), overrides);
  return validateConfig(merged, options);
}
