/**
 * Backing chains of the images a VM opens: the header of a qcow2 image may name any host file as
 * its backing file (or external data file), which the guest then reads (`qemu-img create -b
 * /etc/shadow -F raw evil.qcow2`). qvm opens an image only when every file its chain names is one
 * the config names itself: a disk's `backing_file`, or a file of `allowed_backing_files`; and
 * every image in it by the format its header records, never by a guess.
 */
import {
  diskFile,
  IMAGE_FORMATS,
  imageOf,
  pinnedImageFormat,
  type VmConfig,
} from "../config/mod.ts";
import { UsageError } from "../errors.ts";
import { backingChain } from "./img.ts";

function real(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

const HINT = "list it under allowed_backing_files in the config to allow it";

/**
 * Reads the chain of `file` (opened as `format`) and throws a UsageError (exit 3) naming the
 * image and the file when the chain names a file outside `allowed`, a backing file without a
 * recorded format, or a format qvm does not open. `what` names the image in messages.
 */
export async function checkChain(
  file: string,
  format: string,
  options: { allowed: readonly string[]; what: string },
): Promise<void> {
  const allowed = new Set(options.allowed.map(real));
  const chain = await backingChain(file, format, (path) => allowed.has(real(path)));
  const last = chain[chain.length - 1];
  if (last.backing !== undefined && allowed.has(real(last.backing))) {
    // Allowed, and so followed, but it could not be opened.
    throw new UsageError(
      `${options.what} '${file}': its backing file '${last.backing}' cannot be read as ` +
        `${last.backingFormat ?? "raw"}`,
    );
  }
  for (const image of chain) {
    const at = image.file === file ? "" : ` (in its backing file '${image.file}')`;
    if (image.dataFile !== undefined && !allowed.has(real(image.dataFile))) {
      throw new UsageError(
        `${options.what} '${file}' keeps its data in another file, '${image.dataFile}'${at}, ` +
          `that the config does not name: refused; ${HINT}`,
      );
    }
    if (image.backing === undefined) continue;
    if (!allowed.has(real(image.backing))) {
      throw new UsageError(
        `${options.what} '${file}' has a backing file, '${image.backing}'${at}, that the ` +
          `config does not name: refused (the guest would read it); ${HINT}`,
      );
    }
    const backingFormat = image.backingFormat;
    if (backingFormat === undefined) {
      throw new UsageError(
        `${options.what} '${file}': backing file '${image.backing}'${at} has no recorded format ` +
          `(QEMU would guess it); record it with 'qemu-img rebase -u -F qcow2|raw -b ` +
          `${image.backing} ${image.file}'`,
      );
    }
    if (!(IMAGE_FORMATS as readonly string[]).includes(backingFormat)) {
      throw new UsageError(
        `${options.what} '${file}': backing file '${image.backing}'${at} is in ` +
          `${backingFormat} format; qvm opens qcow2 and raw images`,
      );
    }
  }
}

/**
 * Checks the backing chain of every image `config` makes QEMU open as qcow2: `image` (in its
 * pinned format) and each qcow2 disk whose file exists, else its `backing_file` (for disks not
 * made yet). `diskDir` is where disks without a `file` live.
 */
export async function checkConfigChains(config: VmConfig, diskDir: string): Promise<void> {
  const allowed = config.allowed_backing_files ?? [];
  if (config.image !== undefined) {
    // The image may have gone (or changed) since the VM was defined: one line, exit 3.
    imageOf(config.image);
    const format = config.image_format ?? pinnedImageFormat(config.image);
    await checkChain(config.image, format, { allowed, what: "image" });
  }
  for (const disk of config.storage) {
    if (disk.type !== "qcow2") continue;
    const file = diskFile(disk, diskDir);
    let exists = true;
    try {
      Deno.statSync(file);
    } catch {
      exists = false;
    }
    const what = `disk '${disk.name}'`;
    if (exists) {
      const own = disk.backing_file === undefined ? [] : [disk.backing_file];
      await checkChain(file, "qcow2", { allowed: [...own, ...allowed], what });
    } else if (disk.backing_file !== undefined) {
      const format = disk.backing_format ?? "qcow2";
      await checkChain(disk.backing_file, format, { allowed, what: `backing file of ${what}` });
    }
  }
}
