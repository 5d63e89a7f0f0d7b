/** Config flags shared by `add` and `apply` (`--name`, `--memory`, `--cpu`, `--binary`, `--image`). */
import type { Context } from "./context.ts";
import type { OptionSpec, ParsedArgs } from "./spec.ts";
import type { VmConfig } from "../config/mod.ts";
import { configModule } from "../lazy.ts";
import { portHolder } from "../cloud/paths.ts";

/** The flags that set config keys on top of the YAML files. */
export const configFlagOptions: Record<string, OptionSpec> = {
  name: { type: "string", value: "NAME", description: "VM name (letters, digits, . _ -)" },
  memory: { type: "string", value: "SIZE", description: "guest memory, e.g. 512M or 2G" },
  cpu: { type: "string", value: "N", description: "virtual CPUs" },
  binary: { type: "string", value: "PATH", description: "QEMU binary", complete: "file" },
  image: {
    type: "string",
    value: "FILE",
    description: "base image: the root disk becomes a qcow2 overlay of it (never written)",
    complete: "file",
  },
};

/** The config keys set by flags (only those given). */
export function configFromFlags(values: ParsedArgs["values"]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of ["name", "memory", "binary"] as const) {
    if (typeof values[key] === "string") out[key] = values[key];
  }
  if (typeof values.cpu === "string") {
    out.cpu = /^\d+$/.test(values.cpu) ? Number(values.cpu) : values.cpu;
  }
  if (typeof values.image === "string") {
    // Relative to where qvm runs, as any path given on the command line.
    const image = values.image;
    out.image = image.startsWith("/") || image === "" ? image : `${Deno.cwd()}/${image}`;
  }
  return out;
}

/**
 * Loads, merges (onto `base` when given) and validates configs; warnings go to stderr. A fixed
 * host port in use is refused naming the VM of ours that holds it.
 */
export async function loadVmConfig(
  ctx: Context,
  files: string[],
  overrides: Record<string, unknown>,
  base?: VmConfig,
): Promise<VmConfig> {
  const { loadConfigs } = await configModule();
  return loadConfigs(files, overrides, {
    warn: (m: string) => ctx.warn(m),
    base,
    portHolder: (forward) => portHolder(ctx, forward),
  });
}
