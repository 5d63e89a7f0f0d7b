/**
 * A VM handed to libvirt (`export`), and a libvirt domain taken in (`import-libvirt`).
 *
 * `export --to URI` runs under the VM's lock, so two exports of one VM (or an export and a start)
 * never overlap: the second finds the domain the first defined and says so. With `--copy-storage`
 * the VM must be stopped; its disks become volumes of a pool at the URI (see libvirt/copy.ts) and
 * the domain names them. Ctrl-C or SIGTERM ends it cleanly: the volumes it made are deleted unless
 * the domain that uses them was defined.
 *
 * An imported domain's config is read from at most 1 MiB of a regular file; what it brings onto
 * this host (host paths, guest commands, foreign SSH keys, exposed ports) is listed, and a path the
 * guest could write in a system folder is refused.
 */
import { InterruptedError, QvmError, UsageError } from "../errors.ts";
import {
  diskFile,
  escapeOptionValue,
  isPublicKeyLine,
  looksLikeId,
  readSmallText,
  splitOptionText,
  validateConfig,
  validateName,
  type VmConfig,
} from "../config/mod.ts";
import {
  checkDomainFree,
  type CopiedStorage,
  type CopyProgress,
  copyStorage,
  defineDomain,
  deletedNote,
  deleteVolumes,
  type DiskCopy,
  domainDefined,
  type DomainExport,
  domainToConfig,
  domainXml,
  exposureOf,
  refuseSystemWrites,
  shortKey,
  startDomain,
} from "../libvirt/mod.ts";
import { checkConfigChains } from "../qemu/chains.ts";
import { ensurePrivateDir, type VmRecord } from "../state/mod.ts";
import { homeKeys, keyPaths } from "../cloud/ssh.ts";
import { cloudModule } from "../cloud/lazy.ts";
import type { Deadline, VmEnv } from "./env.ts";
import { withVm } from "./guard.ts";
import { isLive } from "./observe.ts";
import { exists, vmPaths } from "../vm_files.ts";
import { disksRoot } from "./storage.ts";

/** A VM as a domain, and what to tell the user about it. */
export interface ExportedDomain {
  made: DomainExport;
  /** One line each: what libvirt cannot express, what only metadata keeps, a missing emulator. */
  warnings: string[];
}

/** The config, the options qvm adds for its cloud sections, and the emulator's path. */
interface Source {
  vm: { id: string; name: string; config: VmConfig };
  diskDir: string;
  emulator?: string;
  cloud?: { argv: string[]; files: string[] };
  warnings: string[];
}

function onPath(binary: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (dir !== "" && Deno.statSync(`${dir}/${binary}`).isFile) return `${dir}/${binary}`;
    } catch { /* not here */ }
  }
  return undefined;
}

/**
 * What qvm adds at start for `image:`, `network:` and `cloud_init:` (the guest agent becomes a
 * libvirt channel instead): the same options, with `auto` host ports as 0 (QEMU picks a free one),
 * the root overlay and the seed image, which exist once the VM has been started by qvm.
 */
async function cloudOptions(
  env: VmEnv,
  vm: { id: string; config: VmConfig },
): Promise<{ argv: string[]; files: string[] } | undefined> {
  const { image, network, cloud_init } = vm.config;
  if (image === undefined && network === undefined && cloud_init === undefined) return undefined;
  const { cloudArgvPreview } = await cloudModule();
  const argv = cloudArgvPreview(env, { id: vm.id, config: { ...vm.config, guest_agent: false } });
  return { argv, files: driveFiles(argv).map((d) => d.file) };
}

/** The files `-drive` options of `argv` open (`file=`), with their format; vvfat folders too. */
function driveFiles(argv: string[]): { file: string; format?: string; folder: boolean }[] {
  const found: { file: string; format?: string; folder: boolean }[] = [];
  for (let i = 0; i + 1 < argv.length; i++) {
    if (argv[i] !== "-drive") continue;
    const parts = splitOptionText(argv[++i]);
    const value = (key: string) =>
      parts.find((p) => p.startsWith(`${key}=`))?.slice(key.length + 1);
    const file = value("file");
    const dir = value("file.dir");
    if (file !== undefined) found.push({ file, format: value("format"), folder: false });
    if (dir !== undefined) found.push({ file: dir, folder: true });
  }
  return found;
}

async function sourceOf(env: VmEnv, vm: VmRecord): Promise<Source> {
  const binary = vm.config.binary;
  const emulator = binary !== undefined && !binary.startsWith("/") ? onPath(binary) : undefined;
  const warnings: string[] = [];
  if (binary !== undefined && !binary.startsWith("/") && emulator === undefined) {
    warnings.push(`binary '${binary}' is not on PATH: libvirt will pick the emulator`);
  }
  return {
    vm: { id: vm.id, name: vm.name, config: vm.config },
    diskDir: vmPaths(env.dirs, vm.id).diskDir,
    emulator,
    cloud: await cloudOptions(env, vm),
    warnings,
  };
}

/** `text` with its line breaks and tabs written as `\n`, `\r`, `\t`, to stay on one line. */
function oneLine(text: string): string {
  return text.replace(/[\n\r\t]/g, (c) => JSON.stringify(c).slice(1, -1));
}

function build(source: Source): ExportedDomain {
  const { vm } = source;
  const made = domainXml(vm, {
    diskDir: source.diskDir,
    emulator: source.emulator,
    cloud: source.cloud,
  });
  const warnings = [...source.warnings];
  for (const line of made.passedThrough) {
    warnings.push(
      `no libvirt element for '${oneLine(line)}': passed to QEMU in <qemu:commandline>`,
    );
  }
  for (const key of made.unknownKeys) {
    warnings.push(`${key}: qvm cannot map this to libvirt yet; it is kept in <metadata> only`);
  }
  if (vm.config.cloud_init?.user_data !== undefined || vm.config.cloud_init?.runcmd !== undefined) {
    warnings.push(
      "the config, cloud_init included, is kept in the domain's <metadata>: whoever can read " +
        "the domain can read it",
    );
  }
  return { made, warnings };
}

/**
 * VM `vm` as libvirt domain XML (nothing is defined anywhere). A value XML cannot carry is a
 * UsageError (exit 3).
 */
export async function exportDomain(env: VmEnv, vm: VmRecord): Promise<ExportedDomain> {
  return build(await sourceOf(env, vm));
}

/** What `exportToLibvirt` needs besides the VM. */
export interface ExportToOptions {
  uri: string;
  /** Start the domain once defined. */
  start: boolean;
  /** Carry the disks into volumes of `pool` (one self-contained volume per overlay: `flatten`). */
  copyStorage?: { pool: string; flatten: boolean };
  /** For the VM's lock (another command may hold it). */
  deadline: Deadline;
  onProgress?: (progress: CopyProgress) => void;
}

/** What `exportToLibvirt` did. */
export interface ExportedTo extends ExportedDomain {
  /** Files the domain names that were not carried: they must exist at those paths there. */
  needed: string[];
  /** Volumes made in the pool, in order. */
  volumes: string[];
  started: boolean;
}

/**
 * Aborts the signal `act` gets on Ctrl-C or SIGTERM, with an InterruptedError saying `message`;
 * the listeners are gone when `act` ends.
 */
async function interruptible<T>(
  message: string,
  act: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const listeners = (["SIGINT", "SIGTERM"] as const).map((name) => {
    const listener = () => controller.abort(new InterruptedError(name, message));
    Deno.addSignalListener(name, listener);
    return () => Deno.removeSignalListener(name, listener);
  });
  try {
    return await act(controller.signal);
  } finally {
    for (const remove of listeners) remove();
  }
}

/** The disks to carry: the config's disks, then the `-drive` images of the cloud sections. */
function disksToCopy(source: Source): DiskCopy[] {
  const { vm } = source;
  const disks: DiskCopy[] = [];
  for (const item of vm.config.storage) {
    if (item.type === "virtfs") continue;
    disks.push({
      file: diskFile(item, source.diskDir),
      format: item.type,
      volume: `${vm.name}-${item.name}.${item.type}`,
    });
  }
  for (const drive of driveFiles(source.cloud?.argv ?? [])) {
    if (drive.folder) continue;
    if (drive.format !== "qcow2" && drive.format !== "raw") continue;
    disks.push({
      file: drive.file,
      format: drive.format,
      volume: `${vm.name}-${drive.file.slice(drive.file.lastIndexOf("/") + 1)}`,
    });
  }
  return disks;
}

/** The source as it is at the target: each carried file named by its volume's path. */
function atTarget(source: Source, copied: CopiedStorage): Source {
  const { config } = source.vm;
  const storage = config.storage.map((item) => {
    if (item.type === "virtfs") return item;
    const file = diskFile(item, source.diskDir);
    const path = copied.paths.get(file);
    if (path === undefined) return item;
    const { backing_file: _, backing_format: __, ...rest } = item;
    const backing = copied.backing.get(file);
    return backing === undefined
      ? { ...rest, file: path }
      : { ...rest, file: path, backing_file: backing.path, backing_format: backing.format };
  });
  const moved = (file: string) => copied.paths.get(file) ?? file;
  const argv = (source.cloud?.argv ?? []).map((arg, i, all) => {
    if (all[i - 1] !== "-drive") return arg;
    return splitOptionText(arg).map((part) =>
      part.startsWith("file=") ? `file=${moved(part.slice(5))}` : part
    ).map(escapeOptionValue).join(",");
  });
  let image = config.image;
  if (image !== undefined) {
    // The image the root overlay stands on there; flattened, the overlay is the image.
    const overlay = driveFiles(source.cloud?.argv ?? []).find((d) =>
      copied.backing.has(d.file) && d.format === "qcow2"
    );
    if (overlay !== undefined) {
      image = copied.backing.get(overlay.file)?.path ?? copied.paths.get(overlay.file);
    }
  }
  return {
    ...source,
    vm: { ...source.vm, config: { ...config, storage, ...(image ? { image } : {}) } },
    cloud: source.cloud && { argv, files: source.cloud.files.map(moved) },
  };
}

/**
 * Defines VM `vm` at `options.uri` (and starts it when asked), under the VM's lock. Refusals come
 * first and alone, with nothing made: a file the domain needs that does not exist here (exit 1), a
 * domain of that name there (exit 1); with copyStorage a running VM, a missing pool or a taken
 * volume name (exit 3). A failure or an interrupt after volumes were made deletes them, unless the
 * domain naming them was defined.
 */
export async function exportToLibvirt(
  env: VmEnv,
  vm: VmRecord,
  options: ExportToOptions,
): Promise<ExportedTo> {
  const { uri } = options;
  const copy = options.copyStorage;
  const interrupted = `export interrupted: nothing was defined at ${uri}`;
  return await withVm(
    env,
    vm,
    { deadline: options.deadline },
    (seen) =>
      interruptible(interrupted, async (signal) => {
        const { name } = seen.vm;
        const here = await sourceOf(env, seen.vm);
        // Built once here first: a value XML cannot carry is refused before anything is made.
        let result = build(here);
        if (copy !== undefined && isLive(seen.status)) {
          throw new UsageError(
            `VM '${name}' is ${seen.status}: stop it before export --copy-storage ` +
              "(its disks change while it runs)",
          );
        }
        const disks = copy === undefined ? [] : disksToCopy(here);
        const missing = [...result.made.files, ...disks.map((d) => d.file)]
          .filter((file) => !exists(file, { follow: true }));
        if (missing.length > 0) {
          throw new QvmError(
            `export: ${name} needs ${missing[0]}, which does not exist here (start the VM once ` +
              "to create its disks" +
              (copy === undefined ? "; they must exist at the same paths at the target)" : ")"),
          );
        }
        await checkDomainFree({ uri, name, signal });
        let volumes: string[] = [];
        const carried = new Set<string>();
        let copied: CopiedStorage | undefined;
        if (copy !== undefined) {
          copied = await copyStorage({
            uri,
            pool: copy.pool,
            signal,
            disks,
            flatten: copy.flatten,
            // In qvm's disk folder: a copy left by a kill shows in `storage orphaned`.
            workDir: () => {
              ensurePrivateDir(disksRoot(env.dirs), { within: env.dirs.dataDir });
              return disksRoot(env.dirs);
            },
            onProgress: options.onProgress,
          });
          volumes = copied.volumes;
          for (const path of copied.paths.values()) carried.add(path);
          for (const backing of copied.backing.values()) if (backing) carried.add(backing.path);
        }
        try {
          if (copied !== undefined) {
            result = build(atTarget(here, copied));
            // The copy took a while: a domain of that name may have come meanwhile.
            await checkDomainFree({ uri, name, signal });
          }
          await defineDomain({ uri, name, xml: result.made.xml, signal });
        } catch (err) {
          // Interrupted while virsh defined it: libvirt may have done so, and its volumes stay.
          if (
            err instanceof InterruptedError && await domainDefined({ uri, name }).catch(() => false)
          ) {
            throw new InterruptedError(
              err.exitCode === 130 ? "SIGINT" : "SIGTERM",
              `export interrupted after '${name}' was defined at ${uri}` +
                (volumes.length > 0 ? ` (with its volumes ${volumes.join(", ")})` : ""),
            );
          }
          if (copy !== undefined && volumes.length > 0) {
            const left = await deleteVolumes({ uri, pool: copy.pool }, volumes);
            if (err instanceof Error) {
              err.message += deletedNote({ pool: copy.pool, volumes, left });
            }
          }
          throw err;
        }
        if (options.start && signal.aborted) {
          throw new InterruptedError(
            (signal.reason as InterruptedError).exitCode === 130 ? "SIGINT" : "SIGTERM",
            `export interrupted: '${name}' was defined at ${uri} but not started`,
          );
        }
        if (options.start) {
          await startDomain({ uri, name });
        }
        return {
          ...result,
          needed: result.made.files.filter((file) => !carried.has(file)),
          volumes,
          started: options.start,
        };
      }),
  );
}

/** What `importDomainFile` defined, and what to tell the user. */
export interface ImportedVm {
  vm: VmRecord;
  /** True when the domain still says exactly what qvm exported, and qvm's config was used. */
  exact: boolean;
  /** One line each: parts not imported, and what the VM brings onto this host. */
  warnings: string[];
}

/** The user's own public keys: `~/.ssh/*.pub` and qvm's own key. */
function ownKeys(env: VmEnv): string[] {
  const keys = homeKeys(isPublicKeyLine);
  try {
    keys.push(Deno.readTextFileSync(keyPaths(env.dirs.dataDir).public).trim());
  } catch { /* no key made yet */ }
  return keys;
}

/** `items` as one line, at most `max` of them shown. */
function listed(items: string[], max = 20): string {
  const shown = items.slice(0, max).join(", ");
  return items.length > max ? `${shown} and ${items.length - max} more` : shown;
}

/**
 * Defines a VM from the domain XML in `file` (see the module comment). Refuses (exit 3) a file
 * that is not a regular file, is over 1 MiB, is not a QEMU domain, or gives the guest a writable
 * path in a system folder; nothing is defined then.
 */
export async function importDomainFile(
  env: VmEnv,
  options: { file: string; name?: string },
): Promise<ImportedVm> {
  const { file } = options;
  const text = await readSmallText(file, { what: "domain XML", regularOnly: true });
  const warnings: string[] = [];
  let config: VmConfig;
  let domain;
  let exposure;
  try {
    domain = domainToConfig(text);
    config = validateConfig(domain.config, { warn: (m) => warnings.push(m) });
    exposure = exposureOf(config, { ownKeys: ownKeys(env) });
    refuseSystemWrites(exposure);
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(`${file}: ${err.message}`);
    throw err;
  }
  const name = validateName(options.name ?? domain.name);
  // One line per kind of thing left out, however often the domain repeats it.
  const counts = new Map<string, number>();
  for (const line of domain.notImported) counts.set(line, (counts.get(line) ?? 0) + 1);
  for (const [line, n] of counts) {
    warnings.push(`not imported from ${file}: ${line}${n > 1 ? ` (${n} times)` : ""}`);
  }
  if (exposure.paths.length > 0) {
    const paths = exposure.paths.map((p) => `${p.path} (${p.by}${p.writable ? ", writable" : ""})`);
    warnings.push(`${file}: '${name}' reaches these host paths: ${listed(paths)}`);
  }
  if (exposure.commands.length > 0) {
    warnings.push(
      `${file}: cloud-init runs these commands in '${name}': ${listed(exposure.commands)}`,
    );
  }
  if (exposure.foreignKeys.length > 0) {
    warnings.push(
      `${file}: cloud-init lets these SSH keys, not yours, log in to '${name}': ` +
        listed(exposure.foreignKeys.map(shortKey)),
    );
  }
  if (exposure.ports.length > 0) {
    warnings.push(
      `${file}: '${name}' opens these ports to other hosts: ${listed(exposure.ports)}`,
    );
  }
  const uuid = domain.uuid?.toLowerCase();
  const id = uuid !== undefined && looksLikeId(uuid) && !env.store.get(uuid)
    ? uuid
    : crypto.randomUUID();
  // The disks' images may name other host files in their headers: refused as add refuses them.
  await checkConfigChains(config, vmPaths(env.dirs, id).diskDir);
  const vm = env.store.insert({ id, name, configPath: null, config: { ...config, name } });
  return { vm, exact: domain.exact, warnings };
}
