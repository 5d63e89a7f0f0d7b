/**
 * Every key a config may have, written once: the top-level keys and those of a storage item.
 * Validation warns about any other key; libvirt's export decides for each whether its XML
 * carries it, so a new key cannot be left out unnoticed.
 */

/** Every top-level key a config may have. */
export const CONFIG_KEYS = [
  "name",
  "binary",
  "memory",
  "cpu",
  "display",
  "vga",
  "args",
  "arguments",
  "storage",
  "image",
  "image_format",
  "disk_size",
  "allowed_backing_files",
  "network",
  "cloud_init",
  "guest_agent",
] as const;
/** A top-level config key. */
export type ConfigKey = typeof CONFIG_KEYS[number];
/** The keys of a disk storage item besides `options:` (its extra `-drive` sub-options). */
export const DISK_ITEM_KEYS = [
  "name",
  "type",
  "file",
  "size",
  "interface",
  "backing_file",
  "backing_format",
  "media",
] as const;
/** The keys of a 9p share storage item besides `options:` (its extra `-virtfs` sub-options). */
export const VIRTFS_ITEM_KEYS = [
  "name",
  "type",
  "path",
  "mount_tag",
  "security_model",
  "readonly",
] as const;
