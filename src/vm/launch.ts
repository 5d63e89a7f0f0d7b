/**
 * `launch`: from an image to a VM with a shell in one step. The source (a local image file, an
 * http(s) URL, or a catalog name) becomes a base image (downloaded and verified into the cache
 * when remote); configs and flags merge as for `add`, with what a cloud VM needs filled in
 * (memory, a forward to guest port 22, cloud-init, the guest agent); the VM is defined and
 * started, and the start waits for SSH. A host whose KVM faults on the guest gets it started again
 * under TCG, and later launches go straight to TCG.
 */
import { QvmError, UsageError } from "../errors.ts";
import { resolve } from "../path.ts";
import {
  type ImageFormat,
  loadConfigs,
  parsePortSpec,
  sizeBytes,
  validateName,
  type VmConfig,
} from "../config/mod.ts";
import { isHttpUrl } from "../cloud/catalog.ts";
import { type CachedImage, inspectImage } from "../cloud/image_cache.ts";
import { choosesAccel } from "../qemu/launch.ts";
import type { VmRecord } from "../state/mod.ts";
import { Deadline, type VmEnv } from "./env.ts";
import { cacheLock, fileNameOf, pullImage, type PullProgress, type PullRequest } from "./images.ts";
import { KvmFaultError, type Started, type StartProgress, startVm } from "./start.ts";
import type { WaitFor } from "./ready.ts";

/** What to launch. */
export interface LaunchRequest {
  /** A local image file, an http(s) URL, or a catalog name. */
  source: string;
  /** Config files, merged left to right as for `add`. */
  files: string[];
  /** Config keys set by flags, on top of the files. */
  overrides: Record<string, unknown>;
  /** How a download is verified (`--sha256`, `--insecure-no-checksum`). */
  verify: Omit<PullRequest, "source">;
  waitFor: WaitFor;
  /** How long the start may wait (the download does not count). */
  timeoutMs: number;
}

/** Who hears what a launch does. */
export interface LaunchHooks {
  onPull?: (progress: PullProgress) => void;
  /** The VM is defined: returns the callback for its start's progress, if any. */
  onDefined?: (vm: VmRecord) => ((progress: StartProgress) => void) | undefined;
  /** An info line (stderr in the CLI). */
  note?: (message: string) => void;
}

/** The base image a launch uses. */
export interface LaunchImage {
  path: string;
  format: ImageFormat;
  virtualSize: number;
  /** The cache entry, for a URL or catalog name. */
  cached?: CachedImage;
  /** True when this launch downloaded it. */
  fetched: boolean;
}

/** What a launch did. */
export interface Launched {
  vm: VmRecord;
  started: Started;
  image: LaunchImage;
  /** True when KVM faulted on this host (now or earlier) and the VM runs under TCG instead. */
  tcg: boolean;
}

/** Memory of a launched VM unless a config or flag says otherwise. */
export const LAUNCH_MEMORY = "1G";
/** vCPUs of a launched VM unless a config or flag says otherwise. */
export const LAUNCH_CPUS = 2;

/** The marker, in the runtime dir, of a KVM that faulted on a guest (launches then use TCG). */
export function kvmFaultMarker(runtimeDir: string): string {
  return `${runtimeDir.replace(/\/+$/, "")}/kvm-faulted`;
}

function kvmFaulted(runtimeDir: string): boolean {
  try {
    Deno.lstatSync(kvmFaultMarker(runtimeDir));
    return true;
  } catch {
    return false;
  }
}

/** A base image from `source`: a local file read where it is, or a pull into the cache. */
async function resolveImage(
  env: VmEnv,
  request: LaunchRequest,
  onPull?: (progress: PullProgress) => void,
): Promise<LaunchImage> {
  const { source } = request;
  if (!isHttpUrl(source)) {
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.statSync(source);
    } catch { /* not a file: a catalog name, unless it looks like a path */ }
    if (info) {
      if (!info.isFile) throw new UsageError(`image '${source}' is not a file`);
      if (request.verify.sha256 !== undefined || request.verify.insecure) {
        throw new UsageError(
          "--sha256 and --insecure-no-checksum are for downloads, not for a local image file",
        );
      }
      const path = resolve(source);
      const facts = await inspectImage(path, { downloaded: false, shown: source });
      return { path, format: facts.format, virtualSize: facts.virtualSize, fetched: false };
    }
    if (source.includes("/") || /\.(qcow2|img|raw)$/i.test(source)) {
      throw new UsageError(`image file '${source}' not found`);
    }
  }
  const { image, fetched } = await pullImage(env, { source, ...request.verify }, onPull);
  return {
    path: image.path,
    format: image.format,
    virtualSize: image.virtual_size,
    cached: image,
    fetched,
  };
}

/** A VM name from the image: `debian-12-3fa9` (the catalog name or file name, 4 random hex). */
function nameFor(env: VmEnv, source: string, image: LaunchImage): string {
  const label = image.cached?.alias ??
    (isHttpUrl(source) ? fileNameOf(source) : image.path.slice(image.path.lastIndexOf("/") + 1));
  const stem = label.replace(/\.(qcow2|img|raw)$/i, "").replace(/[^A-Za-z0-9._-]+/g, "-")
    .replace(/^[^A-Za-z0-9]+/, "").slice(0, 50) || "vm";
  for (;;) {
    const name = `${stem}-${crypto.randomUUID().slice(0, 4)}`;
    if (!env.store.get(name)) return validateName(name);
  }
}

function forwardsSsh(spec: unknown): boolean {
  try {
    const forward = parsePortSpec(spec);
    return forward.guest === 22 && forward.proto === "tcp";
  } catch {
    return typeof spec === "object" && spec !== null &&
      (spec as { guest?: unknown }).guest === 22; // a stored forward
  }
}

/** Fills in what a launched cloud VM needs when the configs and flags leave it out. */
function launchDefaults(name: () => string) {
  return (merged: Record<string, unknown>): Record<string, unknown> => {
    const out = { ...merged };
    const absent = (key: string) => out[key] === undefined || out[key] === null;
    if (absent("name")) out.name = name();
    if (absent("memory")) out.memory = LAUNCH_MEMORY;
    if (absent("cpu")) out.cpu = LAUNCH_CPUS;
    const network = (out.network ?? {}) as Record<string, unknown>;
    const ports = Array.isArray(network.ports) ? network.ports : [];
    if (typeof network === "object" && !ports.some(forwardsSsh)) {
      out.network = { ...network, ports: [...ports, "auto:22"] };
    }
    if (absent("cloud_init")) out.cloud_init = {};
    if (absent("guest_agent")) out.guest_agent = true;
    return out;
  };
}

/** The merged, validated config of the VM to launch on `image`. */
async function launchConfig(
  env: VmEnv,
  request: LaunchRequest,
  image: LaunchImage,
): Promise<VmConfig> {
  const config = await loadConfigs(request.files, {
    ...request.overrides,
    image: image.path,
    image_format: image.format,
  }, {
    warn: (message) => env.warn?.(message),
    complete: launchDefaults(() => nameFor(env, request.source, image)),
  });
  if (config.disk_size !== undefined && sizeBytes(config.disk_size) < BigInt(image.virtualSize)) {
    throw new UsageError(
      `disk size ${config.disk_size} is smaller than the image (${image.virtualSize} bytes): ` +
        "the root disk can only grow",
    );
  }
  return config;
}

function withTcg(config: VmConfig): VmConfig {
  return { ...config, arguments: [...config.arguments, { accel: "tcg" }] };
}

/** Appends to `error` what is left: the VM stays defined, and how to look at it or remove it. */
function leftDefined(error: unknown, vm: VmRecord): unknown {
  if (!(error instanceof QvmError)) return error;
  const hint = `VM '${vm.name}' stays defined: 'qvm logs ${vm.name}' shows its console, ` +
    `'qvm start ${vm.name} --wait-for ssh' tries again, 'qvm rm ${vm.name} --delete-storage' ` +
    "removes it";
  error.detail = error.detail ? `${error.detail.trimEnd()}\n${hint}` : hint;
  return error;
}

/**
 * Launches a VM from `request.source`. Until the VM is defined, any failure leaves nothing behind
 * (no VM; a refused download is not cached). A failed start leaves the VM defined, as `start`
 * would, and says so.
 */
export async function launchVm(
  env: VmEnv,
  request: LaunchRequest,
  hooks: LaunchHooks = {},
): Promise<Launched> {
  const image = await resolveImage(env, request, hooks.onPull);
  if (image.fetched) {
    hooks.note?.(`downloaded ${image.cached!.name}, ${image.cached!.verified}`);
  }
  let config = await launchConfig(env, request, image);
  const pickAccel = !choosesAccel(config);
  let tcg = false;
  if (pickAccel && kvmFaulted(env.dirs.runtimeDir)) {
    config = withTcg(config);
    tcg = true;
    hooks.note?.(
      "KVM faulted on a guest on this host before: the VM runs under TCG (--accel kvm to try KVM)",
    );
  }
  let vm: VmRecord;
  const lock = image.cached ? await cacheLock(env) : undefined;
  try {
    // `image rm` takes the same lock: the image cannot go between this check and the insert.
    Deno.statSync(image.path);
    vm = env.store.insert({ name: config.name!, configPath: null, config });
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new QvmError(`image ${image.path} was removed meanwhile: launch again`);
    }
    throw error;
  } finally {
    lock?.release();
  }
  const onProgress = hooks.onDefined?.(vm);
  const deadline = Deadline.in(request.timeoutMs);
  const start = (target: VmRecord) =>
    startVm(env, target, { waitFor: request.waitFor, deadline, onProgress });
  try {
    return { vm, started: await start(vm), image, tcg };
  } catch (error) {
    if (!(error instanceof KvmFaultError) || !pickAccel || tcg) throw leftDefined(error, vm);
    Deno.writeTextFileSync(kvmFaultMarker(env.dirs.runtimeDir), `${error.message}\n`, {
      mode: 0o600,
    });
    hooks.note?.(
      "KVM failed to run the guest (QEMU run state internal-error): starting it again under " +
        "TCG, kept in its config (arguments: [{accel: tcg}])",
    );
  }
  env.store.updateConfig(vm.id, withTcg(vm.config));
  vm = env.store.require(vm.id);
  try {
    return { vm, started: await start(vm), image, tcg: true };
  } catch (error) {
    throw leftDefined(error, vm);
  }
}
