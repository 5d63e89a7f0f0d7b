/**
 * Config flags shared by `add` and `apply` (`--name`, `--memory`, `--cpu`, `--binary`, `--image`),
 * and the cloud flags of `add`, `apply` and `launch` (`--port`, `--user`, `--ssh-key`,
 * `--disk-size`, `--accel`), each of which sets the config key a YAML file would.
 */
import type { Context } from "./context.ts";
import type { OptionSpec, ParsedArgs } from "./spec.ts";
import type { VmConfig } from "../config/mod.ts";
import { configModule } from "./_lazy.ts";
import { portHolder } from "../cloud/paths.ts";
import { UsageError } from "../errors.ts";

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

/** The cloud flags of `add`, `apply` and `launch`: what a cloud VM needs, without a YAML file. */
export const cloudFlagOptions: Record<string, OptionSpec> = {
  port: {
    type: "string",
    multiple: true,
    value: "SPEC",
    description: "port forward HOST:GUEST, auto:GUEST or ADDRESS:HOST:GUEST (repeatable)",
  },
  user: { type: "string", value: "NAME", description: "login user cloud-init creates" },
  "ssh-key": {
    type: "string",
    multiple: true,
    value: "FILE",
    description: "public key file for the user (repeatable; default ~/.ssh/*.pub)",
    complete: "file",
  },
  "disk-size": {
    type: "string",
    value: "SIZE",
    description: "root disk size, e.g. 20G (the image's overlay; cloud-init grows the root fs)",
  },
  accel: {
    type: "string",
    value: "kvm|tcg",
    description: "accelerator: kvm only, or tcg (emulation); default KVM, else TCG",
    complete: ["kvm", "tcg"],
  },
};

/** Every flag of `add` and `apply` that sets a config key. */
export const allConfigFlagOptions: Record<string, OptionSpec> = {
  ...configFlagOptions,
  ...cloudFlagOptions,
};

/** The config keys the config and cloud flags set (only those given). */
export function configOverrides(values: ParsedArgs["values"]): Record<string, unknown> {
  return { ...configFromFlags(values), ...cloudConfigFromFlags(values) };
}

function absolute(path: string): string {
  return path.startsWith("/") || path === "" ? path : `${Deno.cwd()}/${path}`;
}

/** The config keys the cloud flags set (only those given), as a YAML file would write them. */
function cloudConfigFromFlags(values: ParsedArgs["values"]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const list = (key: string) => (Array.isArray(values[key]) ? values[key] as string[] : []);
  if (list("port").length > 0) out.network = { ports: list("port") };
  const cloudInit: Record<string, unknown> = {};
  if (typeof values.user === "string") cloudInit.user = values.user;
  if (list("ssh-key").length > 0) cloudInit.ssh_authorized_keys = list("ssh-key").map(absolute);
  if (Object.keys(cloudInit).length > 0) out.cloud_init = cloudInit;
  if (typeof values["disk-size"] === "string") out.disk_size = values["disk-size"];
  if (typeof values.accel === "string") {
    if (values.accel !== "kvm" && values.accel !== "tcg") {
      throw new UsageError(`invalid --accel '${values.accel}': use kvm or tcg`);
    }
    out.arguments = [{ accel: values.accel }];
  }
  return out;
}

/** The config keys set by flags (only those given). */
function configFromFlags(values: ParsedArgs["values"]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of ["name", "memory", "binary"] as const) {
    if (typeof values[key] === "string") out[key] = values[key];
  }
  if (typeof values.cpu === "string") {
    out.cpu = /^\d+$/.test(values.cpu) ? Number(values.cpu) : values.cpu;
  }
  if (typeof values.image === "string") {
    // Relative to where qvm runs, as any path given on the command line.
    out.image = absolute(values.image);
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
