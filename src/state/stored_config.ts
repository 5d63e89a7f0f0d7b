/**
 * A stored config as qvm reads it back: rows written by older tools (an old maqet database) may
 * lack the list keys, which then mean "none". A key of the wrong shape fails, naming its VM and
 * key, when something reads it (so `rm` of such a VM still works), instead of surfacing as an
 * internal error.
 */
import { QvmError } from "../errors.ts";
import type { VmConfig } from "../config/mod.ts";

const LIST_KEYS = ["arguments", "args", "storage"] as const;

/** Makes reading `key` of `config` throw a one-line error naming the VM and the key. */
function poison(config: Record<string, unknown>, key: string, problem: string): void {
  Object.defineProperty(config, key, {
    enumerable: false,
    get() {
      throw new QvmError(
        `VM '${config.name ?? "?"}' has an invalid stored config: ${problem}; ` +
          `remove it (qvm rm) and add it again`,
      );
    },
  });
}

/** `raw` (parsed `config_data`) as a VmConfig, missing list keys filled in as empty lists. */
export function storedConfig(raw: unknown, vmName: string): VmConfig {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    const config: Record<string, unknown> = { name: vmName };
    for (const key of LIST_KEYS) poison(config, key, "it is not a map");
    return config as unknown as VmConfig;
  }
  const config = raw as Record<string, unknown>;
  config.name ??= vmName;
  for (const key of LIST_KEYS) {
    const value = config[key];
    if (value === undefined || value === null) {
      config[key] = [];
    } else if (!Array.isArray(value)) {
      poison(config, key, `'${key}' must be a list`);
    } else if (key === "storage") {
      const bad = value.findIndex((item) =>
        item === null || typeof item !== "object" || Array.isArray(item)
      );
      if (bad !== -1) poison(config, key, `storage item ${bad + 1} is not a map`);
    }
  }
  return config as unknown as VmConfig;
}
