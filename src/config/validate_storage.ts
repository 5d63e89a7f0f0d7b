/**
 * `storage:`: disks (`qcow2`, `raw`) and 9p shares (`virtfs`), each item checked with its
 * defaults filled in, maqet's `options:` form lifted, names unique, SATA ports counted.
 */
import { didYouMean, UsageError } from "../errors.ts";
import { isMap, kindOf, show } from "./_util.ts";
import { absolutePath, choice, flagOf, given, KEY_PATTERN, text } from "./_values.ts";
import { DISK_ITEM_KEYS, VIRTFS_ITEM_KEYS } from "./keys.ts";
import { storageNameProblem } from "./name.ts";
import { readableFile } from "./image.ts";
import { pathExists, systemFolderOf } from "./paths.ts";
import { parseSize } from "./size.ts";
import type { DiskInterface, DiskStorage, StorageItem, VirtfsStorage } from "./types.ts";

const DISK_KEYS: ReadonlySet<string> = new Set(DISK_ITEM_KEYS);
const VIRTFS_KEYS: ReadonlySet<string> = new Set(VIRTFS_ITEM_KEYS);
/** Sub-options qvm writes itself on a disk's `-drive` / a share's `-virtfs`; `options:` can't set them. */
const MANAGED_DRIVE_KEYS = new Set(["format", "if", "id"]);
const MANAGED_VIRTFS_KEYS = new Set(["local", "fsdriver"]);
const INTERFACES: readonly DiskInterface[] = ["virtio", "sata", "ide", "scsi", "none"];
const SECURITY_MODELS: readonly VirtfsStorage["security_model"][] = [
  "passthrough",
  "mapped-xattr",
  "mapped-file",
  "none",
];
const AHCI_PORTS = 6;

/** Extra `-drive`/`-virtfs` sub-options from a storage item's `options:` map, as text. */
function extraOf(key: string, value: unknown, where: string): string {
  if (typeof value === "boolean") return value ? "on" : "off";
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  if (typeof value === "string") return value;
  throw new UsageError(
    `invalid options.${key} ${show(value)}${where}: expected a string, number or true/false`,
  );
}

/**
 * maqet's `options:` form of a storage item: known keys (`mount_tag`, `size`, ...) are read as if
 * written at the top level (both places with different values is an error); any other key is an
 * extra sub-option of the item's `-drive` or `-virtfs`.
 */
function liftOptions(
  item: Record<string, unknown>,
  known: ReadonlySet<string>,
  managed: ReadonlySet<string>,
  where: string,
): { item: Record<string, unknown>; extras: Record<string, string> } {
  const extras: Record<string, string> = {};
  if (!given(item.options)) return { item, extras };
  if (!isMap(item.options)) {
    throw new UsageError(
      `invalid options ${show(item.options)}${where}: expected a map, got ${kindOf(item.options)}`,
    );
  }
  const lifted: Record<string, unknown> = { ...item };
  delete lifted.options;
  for (const [key, value] of Object.entries(item.options)) {
    if (!given(value)) continue;
    if (known.has(key) && key !== "name" && key !== "type") {
      if (given(item[key]) && item[key] !== value) {
        throw new UsageError(
          `invalid storage${where.replace(" for storage", "")}: ${key} is given twice, ` +
            `as ${show(item[key])} and as options.${key} ${show(value)}`,
        );
      }
      lifted[key] = value;
    } else if (managed.has(key) || known.has(key)) {
      throw new UsageError(`invalid options.${key}${where}: qvm sets '${key}' itself`);
    } else {
      if (!KEY_PATTERN.test(key)) {
        throw new UsageError(
          `invalid key ${show(key)} in options${where}: use letters, digits, '.', '_' and '-'`,
        );
      }
      extras[key] = extraOf(key, value, where);
    }
  }
  return { item: lifted, extras };
}

function diskOf(raw: Record<string, unknown>, name: string, type: "qcow2" | "raw"): DiskStorage {
  const where = ` for storage '${name}'`;
  const { item, extras } = liftOptions(raw, DISK_KEYS, MANAGED_DRIVE_KEYS, where);
  // maqet: an overlay of a backing file without a size takes the backing file's size.
  const size = given(item.size)
    ? parseSize(item.size, "")
    : given(item.backing_file)
    ? undefined
    : "10G";
  if (given(item.size) && size === undefined) {
    throw new UsageError(
      `invalid size ${show(item.size)}${where}: use a size like 10G or 512M`,
    );
  }
  const iface = given(item.interface)
    ? choice(
      item.interface,
      INTERFACES,
      (shown) => `unknown interface ${shown}${where} (expected virtio, sata, ide, scsi or none)`,
    )
    : "virtio";
  const file = given(item.file) ? absolutePath("file", item.file, where) : undefined;
  if (file !== undefined) {
    const folder = systemFolderOf(file);
    if (folder !== undefined && !pathExists(file)) {
      throw new UsageError(
        `refusing to create disk '${name}' at ${show(file)}: ${folder} is a system folder ` +
          "(an image that already exists there may be used; new disks go elsewhere)",
      );
    }
  }
  const backing = given(item.backing_file)
    // It must be there when the disk is defined, as maqet checks, not only at its first start.
    ? readableFile("backing_file", absolutePath("backing_file", item.backing_file, where), where)
    : undefined;
  const media = given(item.media)
    ? choice(
      item.media,
      ["disk", "cdrom"],
      (shown) => `unknown media ${shown}${where} (expected disk or cdrom)`,
    )
    : "disk";
  const format = given(item.backing_format)
    ? text("backing_format", item.backing_format, where).toLowerCase()
    : undefined;
  if (format !== undefined && backing === undefined) {
    throw new UsageError(
      `invalid storage '${name}': backing_format is set but backing_file is not`,
    );
  }
  return {
    name,
    type,
    ...(file === undefined ? {} : { file }),
    ...(size === undefined ? {} : { size }),
    interface: iface,
    ...(media === "cdrom" ? { media } : {}),
    ...(backing === undefined ? {} : { backing_file: backing }),
    ...(format === undefined ? {} : { backing_format: format }),
    ...(Object.keys(extras).length === 0 ? {} : { options: extras }),
  };
}

function virtfsOf(raw: Record<string, unknown>, name: string): VirtfsStorage {
  const where = ` for storage '${name}'`;
  const { item, extras } = liftOptions(raw, VIRTFS_KEYS, MANAGED_VIRTFS_KEYS, where);
  if (!given(item.path)) throw new UsageError(`invalid storage '${name}': virtfs needs a 'path'`);
  const path = absolutePath("path", item.path, where);
  let info: Deno.FileInfo | undefined;
  try {
    info = Deno.statSync(path);
  } catch { /* made at start, as maqet makes it */ }
  if (info !== undefined && !info.isDirectory) {
    throw new UsageError(
      `invalid path ${show(path)}${where}: it is a file, and a virtfs share is a folder`,
    );
  }
  return {
    name,
    type: "virtfs",
    path,
    mount_tag: given(item.mount_tag) ? text("mount_tag", item.mount_tag, where) : name,
    security_model: given(item.security_model)
      ? choice(
        String(item.security_model).toLowerCase() === "mapped"
          ? "mapped-xattr"
          : item.security_model,
        SECURITY_MODELS,
        (shown) => `unknown security_model ${shown}${where} ` +
          "(expected passthrough, mapped-xattr (or mapped), mapped-file or none)",
      )
      : "mapped-xattr",
    readonly: given(item.readonly) ? flagOf("readonly", item.readonly, where) : false,
    ...(Object.keys(extras).length === 0 ? {} : { options: extras }),
  };
}

function storageItemOf(item: unknown, i: number, warn: (message: string) => void): StorageItem {
  if (!isMap(item)) {
    throw new UsageError(
      `invalid storage[${i}] ${show(item)}: expected a map, got ${kindOf(item)}`,
    );
  }
  const name = given(item.name) ? item.name : `storage${i}`;
  if (typeof name !== "string") {
    throw new UsageError(`invalid storage name ${show(name)}: expected text, got ${kindOf(name)}`);
  }
  const problem = storageNameProblem(name);
  if (problem !== undefined) throw new UsageError(`invalid storage name ${show(name)}: ${problem}`);
  const typeGiven = given(item.type) ? item.type : "qcow2";
  const type = typeof typeGiven === "string" ? typeGiven.toLowerCase() : typeGiven;
  if (type !== "qcow2" && type !== "raw" && type !== "virtfs") {
    throw new UsageError(
      `unknown storage type ${show(typeGiven)} (expected qcow2, raw or virtfs)`,
    );
  }
  const known = type === "virtfs" ? VIRTFS_KEYS : DISK_KEYS;
  for (const key of Object.keys(item)) {
    if (!known.has(key) && key !== "options") {
      const hint = didYouMean(key, [...known, "options"]);
      warn(`unknown storage key ${show(key)} in '${name}' (ignored)${hint}`);
    }
  }
  return type === "virtfs" ? virtfsOf(item, name) : diskOf(item, name, type);
}

/** Checks the `storage:` list: every item, then unique names and at most 6 SATA disks. */
export function storageOf(value: unknown, warn: (message: string) => void): StorageItem[] {
  if (!Array.isArray(value)) {
    throw new UsageError(`invalid storage ${show(value)}: expected a list, got ${kindOf(value)}`);
  }
  const storage = value.map((item, i) => storageItemOf(item, i, warn));
  const seen = new Set<string>();
  for (const item of storage) {
    if (seen.has(item.name)) throw new UsageError(`duplicate storage name '${item.name}'`);
    seen.add(item.name);
  }
  const sata = storage.filter((item) => item.type !== "virtfs" && item.interface === "sata");
  if (sata.length > AHCI_PORTS) {
    throw new UsageError(`too many sata disks (${sata.length}): the AHCI controller has 6 ports`);
  }
  return storage;
}
