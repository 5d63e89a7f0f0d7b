/**
 * Validating a raw (merged) config into a `VmConfig`: checks every type and value, fills defaults
 * and normalizes sizes. Every error is one UsageError line naming the offending key and value.
 * Each section has its own module (`validate_machine.ts`, `validate_arguments.ts`,
 * `validate_storage.ts`, `cloud_sections.ts`); this one composes them.
 */

import { didYouMean, UsageError } from "../errors.ts";
import { checkCommandKeys, checkSingletons, settleShorthands } from "./_checks.ts";
import { isMap, kindOf, show } from "./_util.ts";
import { given, text } from "./_values.ts";
import { CONFIG_KEYS } from "./keys.ts";
import { validateName } from "./name.ts";
import { cloudSectionsOf } from "./cloud_sections.ts";
import type { PortHolder } from "./network.ts";
import { argsOf, argumentsOf, checkTerminal } from "./validate_arguments.ts";
import { cpuOf, memoryOf } from "./validate_machine.ts";
import { storageOf } from "./validate_storage.ts";
import type { VmConfig } from "./types.ts";

/** Options of `validateConfig`; `warn` receives non-fatal findings such as unknown keys. */
export interface ValidateOptions {
  /** Called once per non-fatal finding, with a one-line message. */
  warn?: (message: string) => void;
  /** Names the VM holding a fixed host port that is taken, for the error's message. */
  portHolder?: PortHolder;
}

const KNOWN_KEYS: ReadonlySet<string> = new Set(CONFIG_KEYS);

/**
 * Checks a raw config (YAML or merged) and returns it as a `VmConfig` with defaults filled in.
 * Throws a one-line UsageError for the first problem (a qvm command as a key is one); unknown
 * top-level keys, a setting given both as a key and in `arguments`, and `nographic` only `warn`.
 * `null` values mean "not set".
 */
export function validateConfig(
  input: Record<string, unknown>,
  options?: ValidateOptions,
): VmConfig {
  const warn = options?.warn ?? (() => {});
  if (!isMap(input)) {
    throw new UsageError(
      `invalid config ${show(input)}: expected a map of keys, got ${kindOf(input)}`,
    );
  }
  checkCommandKeys(input);
  const raw = settleShorthands(input, warn);
  for (const key of Object.keys(raw)) {
    if (key === "log_file" && raw[key] !== undefined) {
      warn("log_file is maqet's own log (ignored): see 'qvm logs VM' and 'qvm logs VM --qemu'");
    } else if (!KNOWN_KEYS.has(key) && raw[key] !== undefined) {
      warn(`unknown config key ${show(key)} (ignored)${didYouMean(key, KNOWN_KEYS)}`);
    }
  }
  const name = typeof raw.name === "number" ? String(raw.name) : raw.name;
  const config: VmConfig = {
    ...(given(name) ? { name: validateName(name as string) } : {}),
    ...(given(raw.binary) ? { binary: text("binary", raw.binary) } : {}),
    ...(given(raw.memory) ? { memory: memoryOf(raw.memory) } : {}),
    ...(given(raw.cpu) ? { cpu: cpuOf(raw.cpu) } : {}),
    ...(given(raw.display) ? { display: text("display", raw.display) } : {}),
    ...(given(raw.vga) ? { vga: text("vga", raw.vga) } : {}),
    arguments: given(raw.arguments) ? argumentsOf(raw.arguments, warn) : [],
    args: given(raw.args) ? argsOf(raw.args, warn) : [],
    storage: given(raw.storage) ? storageOf(raw.storage, warn) : [],
    ...cloudSectionsOf(raw, warn, options?.portHolder),
  };
  checkSingletons({ arguments: config.arguments });
  if (config.display !== undefined) checkTerminal("display", config.display, warn);
  return inOrderOf(config, Object.keys(raw));
}

/**
 * `config` with its keys in the order of `order` (the config files' order), then the defaults:
 * the order of `memory`, `cpu`, `display`, `vga`, `args`, `arguments` and `storage` is the order
 * of their QEMU options, as in maqet (see `configArgv`).
 */
function inOrderOf(config: VmConfig, order: string[]): VmConfig {
  const out: Record<string, unknown> = {};
  const from = config as unknown as Record<string, unknown>;
  for (const key of [...order, ...Object.keys(config)]) {
    if (Object.hasOwn(from, key) && !Object.hasOwn(out, key)) out[key] = from[key];
  }
  return out as unknown as VmConfig;
}
