/** The shapes of a VM's configuration, as validated and stored in `vm_instances.config_data`. */

import type { NetworkConfig } from "./network.ts";
import type { CloudInitConfig } from "./cloud_init.ts";

/** A value inside a structured `arguments` item (YAML scalars, lists and maps). */
export type ArgValue =
  | null
  | string
  | number
  | boolean
  | ArgValue[]
  | { [key: string]: ArgValue };

/** One `arguments` item: `"flag"` or a map whose first key is the option. */
export type ArgumentItem = string | { [key: string]: ArgValue };

/** Disk interfaces qvm knows how to attach. */
export type DiskInterface = "virtio" | "sata" | "ide" | "scsi" | "none";

/** A disk image: created with `qemu-img create` on first start when missing. */
export interface DiskStorage {
  name: string;
  type: "qcow2" | "raw";
  /** Absolute path; absent means qvm's default under the data dir (see `diskFile`). */
  file?: string;
  /** Size with unit, e.g. `10G`; absent for an overlay that takes its backing file's size. */
  size?: string;
  interface: DiskInterface;
  /** `cdrom`: a read-only CD-ROM drive whose image is never created (maqet's `media:`). */
  media?: "cdrom";
  backing_file?: string;
  backing_format?: string;
  /** Extra `-drive` sub-options (maqet's `options:` map), e.g. `{cache: "none"}`. */
  options?: Record<string, string>;
}

/** A host folder shared with the guest over 9p. */
export interface VirtfsStorage {
  name: string;
  type: "virtfs";
  path: string;
  mount_tag: string;
  security_model: "passthrough" | "mapped-xattr" | "mapped-file" | "none";
  readonly: boolean;
  /** Extra `-virtfs` sub-options (maqet's `options:` map). */
  options?: Record<string, string>;
}

/** One `storage` item. */
export type StorageItem = DiskStorage | VirtfsStorage;

/** A validated VM configuration; every path in it is absolute. */
export interface VmConfig {
  name?: string;
  binary?: string;
  /** `-m` value as given, e.g. `1G` or `512M`. */
  memory?: string;
  /** `-smp` value: a CPU count, or `-smp` text such as `4,sockets=1,cores=2,threads=2`. */
  cpu?: number | string;
  display?: string;
  vga?: string;
  arguments: ArgumentItem[];
  /** Raw argv appended as is. */
  args: string[];
  storage: StorageItem[];
  /** qvm extension: base image; the root disk is a qcow2 overlay of it (it is never written). */
  image?: string;
  /**
   * qvm extension: the format `image` is opened as: given, or read from its header when the VM
   * was defined (never probed after).
   */
  image_format?: "qcow2" | "raw";
  /** qvm extension: the size of the root overlay (at least the image's), e.g. `20G`. */
  disk_size?: string;
  /** Host files backing chains (of `image`, of qcow2 disks) may name besides the config's own. */
  allowed_backing_files?: string[];
  /** qvm extension: user-mode networking with port forwards. */
  network?: NetworkConfig;
  /** qvm extension: a NoCloud seed built at start. */
  cloud_init?: CloudInitConfig;
  /** qvm extension: the QEMU guest agent channel (default: on when `cloud_init` is set). */
  guest_agent?: boolean;
}
