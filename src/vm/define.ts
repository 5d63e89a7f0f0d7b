/**
 * Changing a VM's definition (`apply`): the read-modify-write runs under the VM's lock, so
 * concurrent applies to one VM each land; applies that create a VM serialize on one definitions
 * lock, so ten parallel `apply NEWVM` give one VM holding all ten changes.
 */
import { NotFoundError, QvmError } from "../errors.ts";
import type { VmConfig } from "../config/mod.ts";
import type { VmRecord } from "../state/mod.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { VmRemovedError, withVm } from "./guard.ts";
import { acquireLock } from "./lock.ts";
import { isLive } from "./observe.ts";
import { imageModule } from "../lazy.ts";

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
      const vm = env.store.insert({
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
    const configPath = options.configPath === undefined ? seen.vm.configPath : options.configPath;
    if (!env.store.updateConfig(seen.vm.id, config, { configPath })) {
      throw new NotFoundError(`VM '${seen.vm.name}' no longer exists`);
    }
    return { vm: env.store.require(seen.vm.id), created: false };
  });
}
