/**
 * A domain's `<devices>` read into a qvm config: file disks, 9p shares and the guest agent
 * channel become storage items and `guest_agent`; the devices QEMU or libvirt add by themselves
 * are passed over; anything else is a note of what was not imported. Pure.
 */
import { child, childElements, type XmlElement } from "./xml.ts";

const ACCESS_MODES: Record<string, string> = {
  passthrough: "passthrough",
  mapped: "mapped-xattr",
  squash: "none",
};
const STORAGE_NAME = /^[A-Za-z][A-Za-z0-9._-]{0,62}$/;
/** Devices QEMU or libvirt add by themselves; qvm's QEMU has them without being told. */
const IMPLIED_DEVICES = new Set(["emulator", "controller", "input", "memballoon", "audio"]);
/** What a disk's `<driver>` and children may say that qvm carries (or that is only placement). */
const DISK_DRIVER_ATTRS = new Set(["name", "type", "cache"]);
const DISK_PARTS = new Set([
  "driver",
  "source",
  "target",
  "readonly",
  "alias",
  "backingStore",
  "address",
]);

function diskOf(disk: XmlElement, taken: Set<string>, notes: string[]): unknown {
  const target = child(disk, "target");
  const dev = target?.attrs.dev ?? "?";
  const device = disk.attrs.device ?? "disk";
  const driver = child(disk, "driver");
  // libvirt takes an image without a format as raw; a CD-ROM's image is always one.
  const format = driver?.attrs.type ?? (device === "cdrom" ? "raw" : undefined);
  const file = child(disk, "source")?.attrs.file;
  const bus = target?.attrs.bus ?? "virtio";
  const cdrom = device === "cdrom";
  const why = device !== "disk" && !cdrom
    ? `device '${device}'`
    : (disk.attrs.type ?? "file") !== "file" || file === undefined
    ? `type '${disk.attrs.type}' (qvm takes file disks)`
    : format !== "qcow2" && format !== "raw"
    ? `format '${format}' (qvm takes qcow2 and raw)`
    : !["virtio", "sata", "ide", "scsi"].includes(bus) || (cdrom && bus === "virtio")
    ? `bus '${bus}'${cdrom ? " for a cdrom" : ""}`
    : undefined;
  if (why !== undefined) {
    notes.push(`disk ${dev}: ${why}`);
    return undefined;
  }
  const alias = child(disk, "alias")?.attrs.name?.replace(/^ua-/, "");
  let name = alias !== undefined && STORAGE_NAME.test(alias) ? alias : dev;
  if (!STORAGE_NAME.test(name) || taken.has(name)) name = `disk${taken.size}`;
  taken.add(name);
  const item: Record<string, unknown> = { name, type: format, file, interface: bus };
  // A CD-ROM is read-only by nature: its <readonly/> is not an option of its own.
  if (cdrom) item.media = "cdrom";
  const options: Record<string, string> = {};
  if (driver?.attrs.cache !== undefined) options.cache = driver.attrs.cache;
  if (child(disk, "readonly") && !cdrom) options.readonly = "on";
  if (Object.keys(options).length > 0) item.options = options;
  for (const key of Object.keys(driver?.attrs ?? {})) {
    if (!DISK_DRIVER_ATTRS.has(key)) {
      notes.push(`disk ${dev}: driver ${key}='${driver!.attrs[key]}'`);
    }
  }
  for (const node of childElements(disk)) {
    if (!DISK_PARTS.has(node.name)) notes.push(`disk ${dev}: <${node.name}>`);
  }
  const backing = child(disk, "backingStore");
  const backingFile = child(backing, "source")?.attrs.file;
  if (backingFile !== undefined) {
    item.backing_file = backingFile;
    const backingFormat = child(backing, "format")?.attrs.type;
    if (backingFormat !== undefined) item.backing_format = backingFormat;
  }
  return item;
}

function shareOf(fs: XmlElement, taken: Set<string>, notes: string[]): unknown {
  const path = child(fs, "source")?.attrs.dir;
  const tag = child(fs, "target")?.attrs.dir;
  const model = ACCESS_MODES[fs.attrs.accessmode ?? "passthrough"];
  const driver = child(fs, "driver")?.attrs.type ?? "path";
  if ((fs.attrs.type ?? "mount") !== "mount" || path === undefined || tag === undefined) {
    notes.push(`filesystem ${tag ?? path ?? "?"}: type '${fs.attrs.type}' (qvm takes 9p mounts)`);
    return undefined;
  }
  if (model === undefined || driver !== "path") {
    notes.push(`filesystem ${tag}: accessmode '${fs.attrs.accessmode}', driver '${driver}'`);
    return undefined;
  }
  const alias = child(fs, "alias")?.attrs.name?.replace(/^ua-/, "");
  let name = alias !== undefined && STORAGE_NAME.test(alias) ? alias : `fs${taken.size}`;
  if (taken.has(name)) name = `fs${taken.size}`;
  taken.add(name);
  return {
    name,
    type: "virtfs",
    path,
    mount_tag: tag,
    security_model: model,
    readonly: child(fs, "readonly") !== undefined,
  };
}

/** True for the NIC every qvm VM has unless told otherwise: user networking, default model. */
function defaultNic(nic: XmlElement): boolean {
  const model = child(nic, "model")?.attrs.type ?? "e1000";
  return nic.attrs.type === "user" && (model === "e1000" || model === "e1000e") &&
    childElements(nic).every((c) => ["model", "mac", "address", "alias"].includes(c.name));
}

/** The storage items and guest agent channel of `<devices>`; what else it holds goes to `notes`. */
export function devicesOf(
  devices: XmlElement | undefined,
  notes: string[],
): { storage: unknown[]; agent: boolean } {
  const storage: unknown[] = [];
  let agent = false;
  const taken = new Set<string>();
  for (const device of childElements(devices)) {
    const kind = device.name;
    if (IMPLIED_DEVICES.has(kind)) continue;
    if (kind === "disk") {
      const item = diskOf(device, taken, notes);
      if (item !== undefined) storage.push(item);
    } else if (kind === "filesystem") {
      const item = shareOf(device, taken, notes);
      if (item !== undefined) storage.push(item);
    } else if (kind === "serial" || kind === "console") {
      if (device.attrs.type !== "pty") {
        notes.push(
          `${kind} of type '${device.attrs.type}' (qvm keeps the serial on 'qvm console')`,
        );
      }
    } else if (kind === "interface") {
      if (!defaultNic(device)) notes.push(`interface of type '${device.attrs.type}'`);
    } else if (kind === "channel") {
      const target = child(device, "target");
      if (target?.attrs.type === "virtio" && target.attrs.name === "org.qemu.guest_agent.0") {
        agent = true;
      } else notes.push(`channel ${target?.attrs.name ?? device.attrs.type}`);
    } else if (kind === "video") {
      const model = child(device, "model")?.attrs.type;
      if (model !== "vga") notes.push(`video model '${model}'`);
    } else {
      notes.push(`device <${kind}>${device.attrs.type ? ` of type '${device.attrs.type}'` : ""}`);
    }
  }
  return { storage, agent };
}
