/**
 * Changing a VM's definition (`apply`): the read-modify-write runs under the VM's lock, so
 * concurrent applies to one VM each land; applies that create a VM serialize on one definitions
 * lock, so ten parallel `apply NEWVM` give one VM holding all ten changes.
 */
import { NotFoundError, QvmError, UsageError } from "../errors.ts";
import type { VmConfig } from "../config/mod.ts";
import type { VmRecord } from "../state/mod.ts";
import { openForwards } from "../qemu/argv.ts";
import { checkConfigChains } from "../qemu/chains.ts";
import { imageModule } from "../cloud/lazy.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { VmRemovedError, withVm } from "./guard.ts";
import { acquireLock } from "./lock.ts";
import { isLive } from "./observe.ts";
import { vmPaths } from "../vm_files.ts";

/**
 * Says on stderr which port forwards of `config` listen on every address of the host (other
 * machines can connect to them); at add, apply and start.
 */
export function warnOpenForwards(env: VmEnv, config: VmConfig): void {
  for (const forward of openForwards(config)) {
    env.warn?.(
      `port forward ${forward} listens on every address of this host: other machines can ` +
        "connect to it (give 127.0.0.1 as its host address to keep it on this host)",
    );
  }
}

/**
 * Checks what a new or changed config of VM `id` brings in beyond its own values: its image is no
 * disk a running VM writes to, and no backing chain of its images names a file the config does
 * not (see `checkConfigChains`); open port forwards are warned about.
 */
export async function vetConfig(env: VmEnv, config: VmConfig, id: string): Promise<void> {
  if (config.image !== undefined) {
    const { runningWriterOf } = await imageModule();
    const writer = runningWriterOf(env, config.image, id);
    if (writer) {
      throw new UsageError(
        `image '${config.image}' is a disk that running VM '${writer.name}' writes to: stop it ` +
          "or use a copy",
      );
    }
  }
  await checkConfigChains(config, vmPaths(env.dirs, id).diskDir);
  warnOpenForwards(env, config);
}

/** Defines a new VM (`add`) from a validated config, once `vetConfig` passes; returns it. */
export async function defineVm(
  env: VmEnv,
  config: VmConfig,
  options: { configPath: string | null },
): Promise<VmRecord> {
  const id = crypto.randomUUID();
  const name = config.name ?? `vm-${id.slice(0, 8)}`;
  await vetConfig(env, config, id);
  return env.store.insert({
    id,
    name,
    configPath: options.configPath,
    config: { ...config, name },
  });
}

/** What `applyVm` needs: the deadline, and how to build the new config from the current one. */
export interface ApplyOptions {
  deadline: Deadline;
  /** The merged, validated config: `base` is the VM's current config, undefined for a new VM. */
  merge(base: VmConfig | undefined): Promise<VmConfig>;
  /** The config file to record (the first one given); undefined keeps the current one. */
  configPath?: string | null;
}

/** The lock every VM creation by `apply` takes (a VM that does not exist has no lock of its own). */
export function defineLockPath(runtimeDir: string): string {
  return `${runtimeDir}/locks/define.lock`;
}

/** Merges onto VM `target` under its lock, or creates it if absent; `created` says which. */
export async function applyVm(
  env: VmEnv,
  target: string,
  options: ApplyOptions,
): Promise<{ vm: VmRecord; created: boolean }> {
  for (let attempt = 0;; attempt++) {
    const existing = env.store.get(target);
    if (existing) {
      try {
        return await applyExisting(env, existing, options);
      } catch (err) {
        if (err instanceof VmRemovedError && attempt < 3) continue; // removed meanwhile
        throw err;
      }
    }
    const lock = await acquireLock(defineLockPath(env.dirs.runtimeDir), {
      timeoutMs: options.deadline.remainingMs(),
      what: "VM definitions",
    });
    try {
      if (env.store.get(target)) continue; // created meanwhile: merge onto it instead
      const config = await options.merge(undefined);
      const name = config.name ?? target;
      const id = crypto.randomUUID();
      await vetConfig(env, config, id);
      const vm = env.store.insert({
        id,
        name,
        configPath: options.configPath ?? null,
        config: { ...config, name },
      });
      return { vm, created: true };
    } finally {
      lock.release();
    }
  }
}

function applyExisting(env: VmEnv, existing: VmRecord, options: ApplyOptions) {
  return withVm(env, existing, { deadline: options.deadline }, async (seen) => {
    if (isLive(seen.status)) {
      throw new QvmError(`VM '${seen.vm.name}' is ${seen.status}: stop it before apply`);
    }
    const config = await options.merge(seen.vm.config);
    if (config.image !== undefined && config.disk_size !== undefined) {
      const { checkRootDiskSize } = await imageModule();
      await checkRootDiskSize(env.dirs, { ...seen.vm, size: config.disk_size });
    }
    await vetConfig(env, config, seen.vm.id);
    const configPath = options.configPath === undefined ? seen.vm.configPath : options.configPath;
    if (!env.store.updateConfig(seen.vm.id, config, { configPath })) {
      throw new NotFoundError(`VM '${seen.vm.name}' no longer exists`);
    }
    return { vm: env.store.require(seen.vm.id), created: false };
  });
}
