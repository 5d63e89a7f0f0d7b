/**
 * A domain's `<devices>`: the config's disks and 9p shares that libvirt can describe (the others
 * go to `<qemu:commandline>`), the guest agent channel, and what QEMU gives a qvm VM unless its
 * config says otherwise (a user-mode NIC, the serial console, VGA), with PCI slots kept clear of
 * the devices that passed-through options add. Pure.
 */
import { diskFile, type DiskStorage, type VirtfsStorage, type VmConfig } from "../config/mod.ts";
import type { ArgumentPlan } from "./_export_args.ts";
import { el, type XmlElement } from "./xml.ts";

/** Where libvirt keeps the serial console's log on any host it runs on. */
export const SERIAL_LOG_DIR = "/var/log/libvirt/qemu";

const BUSES = new Set(["virtio", "sata", "ide", "scsi"]);
const CACHE_MODES = new Set(["none", "writeback", "writethrough", "directsync", "unsafe"]);
const ACCESS_MODES: Record<string, string | undefined> = {
  passthrough: "passthrough",
  "mapped-xattr": "mapped",
  none: "squash",
};
const ALIAS = /^[A-Za-z0-9_-]+$/;
/** Passed-through options that add PCI devices, which QEMU places in the first free slots. */
const PCI_OPTIONS = new Set(["-device", "-net", "-nic", "-netdev", "-virtfs", "-drive"]);
/** The first PCI slot given to libvirt's devices when passed-through options add PCI devices. */
const HIGH_SLOT = 0x10;

/** The config's storage as a domain has it. */
export interface StoragePlan {
  /** `<disk>` and `<filesystem>` elements, then the SCSI controller when a disk needs one. */
  devices: XmlElement[];
  /** Items libvirt cannot describe, their files made explicit: passed through as QEMU options. */
  raw: VmConfig["storage"];
  /** Every item, disks with their files made explicit: the storage `<metadata>` keeps. */
  explicit: VmConfig["storage"];
  /** The host files the items use, in order. */
  files: string[];
  /** A SATA disk is among the devices. */
  sata: boolean;
}

/** `media: cdrom` (read without depending on the field's type, which older configs lack). */
function isCdrom(disk: DiskStorage): boolean {
  return (disk as { media?: string }).media === "cdrom";
}

/**
 * A disk libvirt can describe: a known bus (not virtio for a CD-ROM), and no `-drive` sub-options
 * other than `cache`.
 */
function mappableDisk(disk: DiskStorage): boolean {
  const options = Object.entries(disk.options ?? {});
  const media = (disk as { media?: string }).media;
  if (media !== undefined && media !== "cdrom") return false;
  if (isCdrom(disk) && disk.interface === "virtio") return false;
  return BUSES.has(disk.interface) &&
    options.every(([k, v]) => k === "cache" && CACHE_MODES.has(v));
}

/** A share libvirt can describe: a security model it knows and no extra sub-options. */
function mappableShare(share: VirtfsStorage): boolean {
  return ACCESS_MODES[share.security_model] !== undefined &&
    Object.keys(share.options ?? {}).length === 0 && ALIAS.test(share.name);
}

function targetDev(disk: DiskStorage, counters: Record<string, number>): string {
  const prefix = disk.interface === "virtio" ? "vd" : disk.interface === "ide" ? "hd" : "sd";
  const n = counters[prefix] = (counters[prefix] ?? -1) + 1;
  return prefix + (n < 26 ? "" : String.fromCharCode(97 + Math.floor(n / 26) - 1)) +
    String.fromCharCode(97 + (n % 26));
}

function diskElement(disk: DiskStorage, file: string, dev: string): XmlElement {
  const backing = disk.backing_file !== undefined && disk.backing_format !== undefined
    ? el("backingStore", { type: "file" }, [
      el("format", { type: disk.backing_format }),
      el("source", { file: disk.backing_file }),
    ])
    : undefined;
  return el("disk", { type: "file", device: isCdrom(disk) ? "cdrom" : "disk" }, [
    el("driver", { name: "qemu", type: disk.type, cache: disk.options?.cache }),
    el("source", { file }),
    backing,
    el("target", { dev, bus: disk.interface }),
    isCdrom(disk) ? el("readonly") : undefined,
    ALIAS.test(disk.name) ? el("alias", { name: `ua-${disk.name}` }) : undefined,
  ]);
}

function shareElement(share: VirtfsStorage): XmlElement {
  return el("filesystem", { type: "mount", accessmode: ACCESS_MODES[share.security_model] }, [
    el("source", { dir: share.path }),
    el("target", { dir: share.mount_tag }),
    share.readonly ? el("readonly") : undefined,
    el("alias", { name: `ua-${share.name}` }),
  ]);
}

/** The config's storage as `<disk>`/`<filesystem>` elements where libvirt can describe it. */
export function planStorage(storage: VmConfig["storage"], diskDir: string): StoragePlan {
  const plan: StoragePlan = { devices: [], raw: [], explicit: [], files: [], sata: false };
  const counters: Record<string, number> = {};
  let scsi = false;
  for (const item of storage) {
    if (item.type === "virtfs") {
      plan.files.push(item.path);
      plan.explicit.push(item);
      if (mappableShare(item)) plan.devices.push(shareElement(item));
      else plan.raw.push(item);
      continue;
    }
    const file = diskFile(item, diskDir);
    plan.files.push(file);
    plan.explicit.push({ ...item, file });
    if (mappableDisk(item)) {
      plan.devices.push(diskElement(item, file, targetDev(item, counters)));
      scsi ||= item.interface === "scsi";
      plan.sata ||= item.interface === "sata";
    } else {
      plan.raw.push({ ...item, file });
    }
  }
  if (scsi) plan.devices.push(el("controller", { type: "scsi", index: 0, model: "virtio-scsi" }));
  return plan;
}

/**
 * The devices of a qvm VM besides its storage: the guest agent channel when it has one; QEMU's
 * default NIC (user networking), serial console on a pty logged under `/var/log/libvirt/qemu`
 * and VGA, each unless the config sets its own; and neither USB nor a memory balloon.
 */
export function baseDevices(
  vm: { name: string; config: VmConfig },
  plan: ArgumentPlan,
): XmlElement[] {
  const { config } = vm;
  const devices: XmlElement[] = [];
  if (config.guest_agent ?? config.cloud_init !== undefined) {
    // qvm's guest agent channel; libvirt makes the socket and `virsh qemu-agent-command` uses it.
    devices.push(
      el("channel", { type: "unix" }, [
        el("source", { mode: "bind" }),
        el("target", { type: "virtio", name: "org.qemu.guest_agent.0" }),
      ]),
    );
  }
  const rawArgs = config.args.some((a) => /^-+(net|netdev|nic)$/.test(a));
  if (!plan.network && !rawArgs && config.network === undefined) {
    const model = plan.machine?.includes("q35") ? "e1000e" : "e1000";
    devices.push(el("interface", { type: "user" }, [el("model", { type: model })]));
  }
  if (!plan.ownSerial) {
    devices.push(
      el("serial", { type: "pty" }, [
        el("log", { file: `${SERIAL_LOG_DIR}/${vm.name}-serial0.log`, append: "on" }),
        el("target", { port: 0 }),
      ]),
      el("console", { type: "pty" }, [el("target", { type: "serial", port: 0 })]),
    );
  }
  if (config.vga === undefined) devices.push(el("video", {}, [el("model", { type: "vga" })]));
  // QEMU's own machine has neither a USB controller nor a memory balloon unless asked.
  devices.push(
    el("controller", { type: "usb", model: "none" }),
    el("memballoon", { model: "none" }),
  );
  return devices;
}

/**
 * When passed-through options add PCI devices (which QEMU places in the first free slots, after
 * libvirt has chosen its own), adds the SATA controller of `sata` disks and gives each PCI device
 * libvirt will add an address from slot 0x10 up, so that the two never collide.
 */
export function clearPciSlots(
  devices: XmlElement[],
  options: { passed: readonly string[][]; sata: boolean },
): void {
  if (!options.passed.some((group) => PCI_OPTIONS.has(group[0]))) return;
  if (options.sata) devices.push(el("controller", { type: "sata", index: 0 }));
  let slot = HIGH_SLOT;
  for (const device of devices) {
    const pci = device.name === "filesystem" || device.name === "interface" ||
      device.name === "video" ||
      (device.name === "disk" &&
        device.children.some((c) =>
          typeof c !== "string" && c.name === "target" && c.attrs.bus === "virtio"
        )) ||
      (device.name === "controller" && ["scsi", "sata"].includes(device.attrs.type));
    if (!pci) continue;
    const address = `0x${(slot++).toString(16)}`;
    device.children.push(
      el("address", { type: "pci", domain: "0x0000", bus: "0x00", slot: address, function: "0x0" }),
    );
  }
}
