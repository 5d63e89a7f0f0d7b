/**
 * Carrying disks to a libvirt host (`export --to URI --copy-storage`): each disk becomes a volume
 * in a storage pool there, filled through libvirt itself (`vol-create-as`, `vol-upload`), so no
 * ssh or scp of qvm's own is involved.
 *
 * An overlay (a qcow2 disk with a backing file, as `image:` makes) travels as two volumes: the
 * image it stands on, uploaded first, and the overlay, whose header is rewritten (`qemu-img rebase
 * -u` on a private copy) to name the image's volume at the target. `flatten` instead uploads one
 * self-contained qcow2 (`qemu-img convert`). Every check (formats, backing chains, the pool, free
 * volume names) comes before the first volume is made, and a failure or an interrupt after that
 * deletes every volume this copy made.
 */
import { QvmError, UsageError } from "../errors.ts";
import { qemuImg } from "../qemu/img.ts";
import { createVolume, deleteVolume, findVolumes, type PoolTarget, uploadVolume } from "./virsh.ts";

/** One disk to carry. */
export interface DiskCopy {
  /** The local image file. */
  file: string;
  /** Its format, as the config pins it (never probed). */
  format: "qcow2" | "raw";
  /** The volume's name at the target. */
  volume: string;
}

/** How far the uploads are, in bytes over all of them. */
export interface CopyProgress {
  volume: string;
  done: number;
  total: number;
}

/** Options of `copyStorage`. */
export interface CopyOptions extends PoolTarget {
  disks: DiskCopy[];
  /** One self-contained volume per overlay instead of two. */
  flatten: boolean;
  /**
   * The folder for the private copies made here (a temp folder inside it, removed at the end),
   * asked for only when a copy is needed.
   */
  workDir: () => string;
  onProgress?: (progress: CopyProgress) => void;
}

/** Where the disks are at the target. */
export interface CopiedStorage {
  /** Each disk's file → its volume's path at the target. */
  paths: Map<string, string>;
  /** Each disk's file → the backing file its volume names at the target (none when flat). */
  backing: Map<string, { path: string; format: string } | undefined>;
  /** The volumes made, in the order made. */
  volumes: string[];
}

interface ImageFacts {
  virtualSize: number;
  backing?: string;
  backingFormat?: string;
}

async function imageFacts(file: string, format: string): Promise<ImageFacts> {
  let info: Record<string, unknown>;
  try {
    info = JSON.parse(await qemuImg(["info", "--output=json", "-f", format, "--", file]));
  } catch (err) {
    if (err instanceof QvmError) throw new QvmError(`cannot read ${file}: ${err.message}`);
    throw err;
  }
  const backing = info["full-backing-filename"] ?? info["backing-filename"];
  return {
    virtualSize: Number(info["virtual-size"]),
    backing: typeof backing === "string" ? backing : undefined,
    backingFormat: typeof info["backing-filename-format"] === "string"
      ? info["backing-filename-format"] as string
      : undefined,
  };
}

function real(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

/** One volume to make: where its bytes come from, and what it stands on. */
interface Planned {
  name: string;
  format: string;
  capacity: number;
  /** The file uploaded (a disk, a base image, or the flattened copy made here). */
  source: string;
  /** Flatten `source` (of this format) into a copy first. */
  flattenFrom?: string;
  /** The disk file this volume is for (undefined for a base image). */
  disk?: string;
  /** For an overlay: the planned base volume, and its format. */
  base?: Planned;
  baseFormat?: string;
}

function stem(volume: string): string {
  return volume.replace(/\.(qcow2|raw|img|iso)$/, "");
}

/**
 * The volumes of an overlay `disk` standing on `facts.backing`: its base (planned once per image
 * in `bases`, by real path) and itself, rebased onto it at the target.
 */
async function planOverlay(
  disk: DiskCopy,
  options: { facts: ImageFacts & { backing: string }; bases: Map<string, Planned> },
): Promise<Planned> {
  const { facts, bases } = options;
  const baseFormat = facts.backingFormat;
  if (baseFormat !== "qcow2" && baseFormat !== "raw") {
    throw new UsageError(
      `${disk.file} stands on ${facts.backing} of ${
        baseFormat === undefined ? "no recorded format" : `format '${baseFormat}'`
      }: carry it with --flatten`,
    );
  }
  const key = real(facts.backing);
  let base = bases.get(key);
  if (base === undefined) {
    const baseFacts = await imageFacts(facts.backing, baseFormat);
    if (baseFacts.backing !== undefined) {
      throw new UsageError(
        `${facts.backing}, the image under ${disk.file}, stands on ${baseFacts.backing} in ` +
          "turn: carry such a chain with --flatten",
      );
    }
    base = {
      name: `${stem(disk.volume)}-base.${baseFormat}`,
      format: baseFormat,
      capacity: baseFacts.virtualSize,
      source: facts.backing,
    };
    bases.set(key, base);
  }
  return {
    name: disk.volume,
    format: disk.format,
    capacity: facts.virtualSize,
    source: disk.file,
    disk: disk.file,
    base,
    baseFormat,
  };
}

/** Plans the volumes (base images first); reads the images, makes nothing. */
async function plan(options: CopyOptions): Promise<Planned[]> {
  const bases = new Map<string, Planned>();
  const disks: Planned[] = [];
  for (const disk of options.disks) {
    const facts = await imageFacts(disk.file, disk.format);
    if (facts.backing === undefined) {
      disks.push({
        name: disk.volume,
        format: disk.format,
        capacity: facts.virtualSize,
        source: disk.file,
        disk: disk.file,
      });
    } else if (options.flatten) {
      disks.push({
        name: disk.volume,
        format: "qcow2",
        capacity: facts.virtualSize,
        source: disk.file,
        flattenFrom: disk.format,
        disk: disk.file,
      });
    } else {
      disks.push(await planOverlay(disk, { facts: { ...facts, backing: facts.backing }, bases }));
    }
  }
  return [...bases.values(), ...disks];
}

/**
 * Deletes `names` from the pool, each tried once; returns the ones that could not be deleted
 * (with why), so the caller can say what was left.
 */
export async function deleteVolumes(target: PoolTarget, names: string[]): Promise<string[]> {
  const left: string[] = [];
  for (const name of [...names].reverse()) {
    try {
      await deleteVolume(target, name);
    } catch (err) {
      left.push(`${name} (${(err as Error).message})`);
    }
  }
  return left;
}

/** What a clean-up did, to end an error's line: `; the 2 volumes made in pool 'p' were deleted`. */
export function deletedNote(done: { pool: string; volumes: string[]; left: string[] }): string {
  if (done.volumes.length === 0) return "";
  if (done.left.length > 0) return `; could not delete the volumes made: ${done.left.join(", ")}`;
  const n = done.volumes.length;
  return `; the ${n} volume${n === 1 ? "" : "s"} made in pool '${done.pool}' ${
    n === 1 ? "was" : "were"
  } deleted`;
}

/** Refuses (UsageError) a volume name given twice or already taken in the pool; makes nothing. */
async function refuseTakenNames(
  target: PoolTarget,
  options: { names: string[]; pool: string; uri: string },
): Promise<void> {
  const { names } = options;
  const twice = names.find((name, i) => names.indexOf(name) !== i);
  if (twice !== undefined) throw new UsageError(`two disks would be volume '${twice}'`);
  const taken = [...(await findVolumes(target, names)).keys()];
  if (taken.length > 0) {
    throw new UsageError(
      `volume '${taken[0]}' already exists in pool '${options.pool}' at ${options.uri}: ` +
        "nothing was copied (delete it, or rename the VM)",
    );
  }
}

/** Flattens each volume that needs it into a private copy under `tmp()`, its new source. */
async function flattenSources(volumes: Planned[], tmp: () => Promise<string>): Promise<void> {
  for (const volume of volumes) {
    if (volume.flattenFrom === undefined) continue;
    const flat = `${await tmp()}/${volume.name}`;
    await qemuImg([
      "convert",
      "-q",
      "-f",
      volume.flattenFrom,
      "-O",
      "qcow2",
      "--",
      volume.source,
      flat,
    ]);
    volume.source = flat;
  }
}

/** What `uploadVolumes` works with: the pool, the volumes' paths there, and the copy's state. */
interface UploadContext {
  target: PoolTarget;
  paths: Map<string, string>;
  tmp: () => Promise<string>;
  made: string[];
  options: CopyOptions;
}

/** The path of `volume` at the target, as the pool listed it after the volumes were made. */
function pathOf(volume: Planned, context: UploadContext): string {
  const path = context.paths.get(volume.name);
  if (path === undefined || path === "") {
    throw new QvmError(`volume '${volume.name}' vanished from pool '${context.options.pool}'`);
  }
  return path;
}

/**
 * The file to upload for `volume`: its source, or for an overlay a private copy whose header
 * names its base's volume (it names the image where it is here; at the target it is a volume).
 */
async function uploadSource(volume: Planned, context: UploadContext): Promise<string> {
  if (volume.base === undefined) return volume.source;
  const source = `${await context.tmp()}/${volume.name}`;
  await Deno.copyFile(volume.source, source);
  await qemuImg([
    "rebase",
    "-u",
    "-f",
    "qcow2",
    "-b",
    pathOf(volume.base, context),
    "-F",
    volume.baseFormat!,
    "--",
    source,
  ]);
  return source;
}

/** Fills the volumes made, reporting progress over all of them; says where each disk went. */
async function uploadVolumes(volumes: Planned[], context: UploadContext): Promise<CopiedStorage> {
  const { onProgress } = context.options;
  const total = volumes.reduce((sum, v) => sum + Deno.statSync(v.source).size, 0);
  let before = 0;
  const copied: CopiedStorage = { paths: new Map(), backing: new Map(), volumes: context.made };
  for (const volume of volumes) {
    const source = await uploadSource(volume, context);
    const size = Deno.statSync(source).size;
    const start = before;
    onProgress?.({ volume: volume.name, done: start, total });
    await uploadVolume(context.target, {
      name: volume.name,
      file: source,
      onBytes: (done) =>
        onProgress?.({ volume: volume.name, done: start + Math.min(done, size), total }),
    });
    before += size;
    onProgress?.({ volume: volume.name, done: before, total });
    if (volume.disk !== undefined) {
      copied.paths.set(volume.disk, pathOf(volume, context));
      copied.backing.set(
        volume.disk,
        volume.base === undefined
          ? undefined
          : { path: pathOf(volume.base, context), format: volume.baseFormat! },
      );
    }
  }
  return copied;
}

/**
 * Copies `options.disks` into volumes of the pool (see the module comment). Refuses (UsageError,
 * exit 3) before making anything: a pool that is missing or stopped, a volume name that is taken
 * (or given twice), an overlay whose chain cannot be carried as two volumes. After the first
 * volume is made, any failure or an abort of `options.signal` deletes the volumes made, then
 * throws.
 */
export async function copyStorage(options: CopyOptions): Promise<CopiedStorage> {
  const target: PoolTarget = { uri: options.uri, pool: options.pool, signal: options.signal };
  let tmpDir: string | undefined;
  const tmp = async () => {
    tmpDir ??= await Deno.makeTempDir({ dir: options.workDir(), prefix: ".qvm-export-" });
    return tmpDir;
  };
  const made: string[] = [];
  try {
    const volumes = await plan(options);
    const names = volumes.map((v) => v.name);
    await refuseTakenNames(target, { names, pool: options.pool, uri: options.uri });
    await flattenSources(volumes, tmp);
    for (const volume of volumes) {
      await createVolume(target, volume);
      made.push(volume.name);
    }
    const paths = await findVolumes(target, names);
    return await uploadVolumes(volumes, { target, paths, tmp, made, options });
  } catch (err) {
    const left = await deleteVolumes(target, made);
    if (err instanceof Error) {
      err.message += deletedNote({ pool: options.pool, volumes: made, left });
    }
    throw err;
  } finally {
    if (tmpDir !== undefined) await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
  }
}
