/**
 * Composing a VM's config: files merged onto a base, then flags, then defaults, validated
 * (`loadConfigs`); and a validated config back in the form config files use (`configInput`).
 */
import { loadConfigFile } from "./load.ts";
import { mergeConfigs, mergeFlags } from "./merge.ts";
import { isMap } from "./_util.ts";
import { shorthandsAcross } from "./_checks.ts";
import { validateConfig, type ValidateOptions } from "./validate.ts";
import type { VmConfig } from "./types.ts";
import { formatForward } from "./network.ts";

/**
 * A validated config in the form config files use, so that validating it again gives it back:
 * `network.ports` are kept as `{proto, address, host, guest}` and written as
 * `ADDRESS:HOST:GUEST/PROTO`. `apply` merges onto this; libvirt metadata carries it.
 */
export function configInput(config: VmConfig): Record<string, unknown> {
  const input: Record<string, unknown> = { ...config };
  if (config.network) input.network = { ports: config.network.ports.map(formatForward) };
  return input;
}

/**
 * Loads config files and merges them left to right onto `base` (a VM's current config, for
 * `apply`), then `overrides` (CLI flags such as `{name, memory, cpu, binary}`, merged by
 * `mergeFlags`; `undefined` means not given), then lets `complete` fill in what is still missing
 * (`launch`'s defaults), and validates the result. Storage items merge by name only when both have one, so
 * an unnamed disk is always another disk (`storage<i>` by position), never a replacement; on
 * `apply` that is said with a warning. Nothing is written: callers persist only what this
 * returns, so a bad config changes nothing.
 */
export async function loadConfigs(
  paths: string[],
  overrides: Record<string, unknown>,
  options?: ValidateOptions & {
    base?: VmConfig;
    complete?: (merged: Record<string, unknown>) => Record<string, unknown>;
  },
): Promise<VmConfig> {
  let merged: Record<string, unknown> = options?.base ? configInput(options.base) : {};
  let formatGiven = overrides.image_format !== undefined;
  for (const path of paths) {
    const next = await loadConfigFile(path, options);
    for (const message of shorthandsAcross(merged, next)) options?.warn?.(`${path}: ${message}`);
    merged = mergeConfigs(merged, next);
    formatGiven ||= next.image_format !== undefined;
  }
  merged = mergeFlags(merged, overrides);
  if (!formatGiven && merged.image !== options?.base?.image) {
    // The format pinned for the VM's former image says nothing about a new one.
    delete merged.image_format;
  }
  if (options?.complete) merged = options.complete(merged);
  const config = validateConfig(merged, options);
  if (options?.base && Array.isArray(merged.storage)) {
    for (const [i, item] of merged.storage.entries()) {
      if (isMap(item) && (item.name === undefined || item.name === null)) {
        options.warn?.(
          `an unnamed storage item is added as 'storage${i}' (name it to change it later ` +
            "instead of adding another)",
        );
      }
    }
  }
  return config;
}
