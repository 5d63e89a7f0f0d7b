/**
 * Building QEMU options from a validated config. Pure: the parts qvm manages itself (binary,
 * -daemonize, -qmp, -uuid, -name, -serial, -accel) are added by `launch.ts`.
 *
 * `arguments` items follow maqet's rules, except where maqet's output is something QEMU 7.2
 * rejects: a list-valued sub-option repeats its key (`hostfwd=A,hostfwd=B`), and `true`/`false`
 * are written `on`/`off`.
 */

import {
  type ArgumentItem,
  argumentOption,
  type ArgValue,
  diskFile,
  escapeOptionValue,
  formatForward,
  splitOptionText,
  storageId,
  type StorageItem,
  stripDashes,
  type VirtfsStorage,
  type VmConfig,
} from "../config/mod.ts";

function scalarText(value: string | number | boolean): string {
  if (typeof value === "boolean") return value ? "on" : "off";
  return String(value);
}

function isEmpty(value: ArgValue | undefined): boolean {
  if (value === null || value === undefined) return true;
  return typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0;
}

/**
 * Options QEMU 7.2 parses as keyval (QAPI): a list there is written with indices
 * (`children.0=a,children.1=b`); a repeated key is "Invalid parameter type ..., expected: array".
 * Options parsed as QemuOpts (`-netdev user`, `-object`, `-device`, ...) take a repeated key.
 */
const KEYVAL_OPTIONS: ReadonlySet<string> = new Set(["blockdev"]);

/**
 * `key=value` parts for one sub-option. Nothing or an empty map is the bare key (`gtk`); a map
 * gives dotted keys (`x.y=1`); a list repeats the key once per element (`hostfwd=A,hostfwd=B`),
 * or, for a keyval option (`indexed`), numbers them (`children.0=a,children.1=b`).
 */
function subOptions(key: string, value: ArgValue | undefined, indexed: boolean): string[] {
  if (isEmpty(value)) return key === "" ? [] : [key];
  if (Array.isArray(value)) {
    return value.flatMap((element, i) =>
      subOptions(indexed && key !== "" ? `${key}.${i}` : key, element, indexed)
    );
  }
  if (typeof value === "object" && value !== null) {
    return Object.entries(value).flatMap(([k, v]) =>
      subOptions(key === "" ? k : `${key}.${k}`, v, indexed)
    );
  }
  const text = escapeOptionValue(scalarText(value as string | number | boolean));
  return key === "" ? [text] : [`${key}=${text}`];
}

/** The parts of an option's first value: scalars are raw option text, maps `k=v`, lists flatten. */
function headParts(value: ArgValue, indexed: boolean): string[] {
  if (value === null) return [];
  if (Array.isArray(value)) return value.flatMap((element) => headParts(element, indexed));
  if (typeof value === "object") return subOptions("", value, indexed);
  return [scalarText(value)];
}

/**
 * The argv for one `arguments` item: `"flag"` → `-flag`; `{k: null}` or `{k: {}}` → `-k`;
 * `{k: v}` → `-k v`; `{k: [a, b]}` → `-k a,b`; `{k: {a: 1}}` → `-k a=1`; further keys of a map
 * are `k=v` sub-options of the first.
 */
export function argumentArgv(item: ArgumentItem): string[] {
  if (typeof item === "string") return [`-${stripDashes(item)}`];
  const [first, ...rest] = Object.keys(item);
  if (first === undefined) return [];
  const indexed = KEYVAL_OPTIONS.has(stripDashes(first));
  const parts = headParts(item[first], indexed);
  for (const key of rest) parts.push(...subOptions(key, item[key], indexed));
  const flag = `-${stripDashes(first)}`;
  return parts.length === 0 ? [flag] : [flag, parts.join(",")];
}

/** True for `-nographic`, which qvm turns into a headless VM with the serial on `qvm console`. */
export function isNographic(option: string): boolean {
  return stripDashes(option) === "nographic";
}

/**
 * True for a serial port or monitor on QEMU's own stdio (`-serial stdio`, `-serial mon:stdio`,
 * `-monitor stdio`), which QEMU refuses with `-daemonize`. qvm leaves it out: the serial console
 * is qvm's (`qvm console`), the monitor is reached over QMP.
 */
export function isStdioDevice(option: string, value: unknown): boolean {
  const name = stripDashes(option);
  return (name === "serial" || name === "monitor") && (value === "stdio" || value === "mon:stdio");
}

/** `isStdioDevice` for an `arguments` item. */
export function isStdioItem(item: ArgumentItem): boolean {
  if (typeof item === "string") return false;
  const keys = Object.keys(item);
  return keys.length === 1 && isStdioDevice(keys[0], item[keys[0]]);
}

/** Raw `args` without `-nographic` and stdio serial ports and monitors (see `isStdioDevice`). */
export function passedArgs(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i].startsWith("-") && isNographic(args[i])) continue;
    if (args[i].startsWith("-") && isStdioDevice(args[i], args[i + 1])) {
      i++;
      continue;
    }
    out.push(args[i]);
  }
  return out;
}

function extraParts(options: Record<string, string> | undefined): string[] {
  return Object.entries(options ?? {}).filter(([k]) => k !== "id")
    .map(([k, v]) => `${k}=${escapeOptionValue(v)}`);
}

function virtfsArgv(share: VirtfsStorage): string[] {
  const parts = [
    "local",
    `path=${escapeOptionValue(share.path)}`,
    `mount_tag=${escapeOptionValue(share.mount_tag)}`,
    `security_model=${share.security_model}`,
    `id=${escapeOptionValue(share.options?.id ?? storageId(share.name))}`,
  ];
  if (share.readonly) parts.push("readonly=on");
  parts.push(...extraParts(share.options));
  return ["-virtfs", parts.join(",")];
}

/** `-drive`/`-device`/`-virtfs` options for the storage list; controllers are added once. */
export function storageArgv(storage: StorageItem[], diskDir: string): string[] {
  const argv: string[] = [];
  let sataDisks = 0;
  let scsiDisks = 0;
  for (const item of storage) {
    if (item.type === "virtfs") {
      argv.push(...virtfsArgv(item));
      continue;
    }
    const iface = item.interface === "virtio" || item.interface === "ide" ? item.interface : "none";
    const file = escapeOptionValue(diskFile(item, diskDir));
    const id = escapeOptionValue(storageId(item.name));
    const drive = [`file=${file}`, `format=${item.type}`, `if=${iface}`, `id=${id}`];
    if (item.media === "cdrom") drive.push("media=cdrom");
    argv.push("-drive", [...drive, ...extraParts(item.options)].join(","));
    const kind = item.media === "cdrom" ? "cd" : "hd";
    if (item.interface === "sata") {
      if (sataDisks === 0) argv.push("-device", "ahci,id=ahci0");
      argv.push("-device", `ide-${kind},drive=${id},bus=ahci0.${sataDisks}`);
      sataDisks++;
    } else if (item.interface === "scsi") {
      if (scsiDisks === 0) argv.push("-device", "virtio-scsi-pci,id=scsi0");
      argv.push("-device", `scsi-${kind},drive=${id},bus=scsi0.0`);
      scsiDisks++;
    }
  }
  return argv;
}

/**
 * The QEMU options for a validated config: those of `memory`, `cpu`, `display`, `vga`,
 * `arguments`, `storage` and raw `args`, in the order these keys have in the config (the order
 * of its files, as maqet writes them: a `storage` key before `arguments` puts its disks first).
 * `-nographic` and stdio serial ports and monitors are left out (see `isNographic`,
 * `isStdioDevice`). Pure; `diskDir` is where disks without a `file` live.
 */
export function configArgv(config: VmConfig, options: { diskDir: string }): string[] {
  const argv: string[] = [];
  for (const key of Object.keys(config)) {
    if (key === "memory" && config.memory !== undefined) argv.push("-m", config.memory);
    if (key === "cpu" && config.cpu !== undefined) argv.push("-smp", String(config.cpu));
    if (key === "display" && config.display !== undefined) argv.push("-display", config.display);
    if (key === "vga" && config.vga !== undefined) argv.push("-vga", config.vga);
    if (key === "arguments") {
      for (const item of config.arguments) {
        if (!isNographic(argumentOption(item)) && !isStdioItem(item)) {
          argv.push(...argumentArgv(item));
        }
      }
    }
    if (key === "storage") argv.push(...storageArgv(config.storage, options.diskDir));
    if (key === "args") argv.push(...passedArgs(config.args));
  }
  return argv;
}

/** Host addresses that mean every address of the host. */
const ALL_ADDRESSES = new Set(["", "0.0.0.0", "::", "[::]"]);

/**
 * The port forwards of `config` that listen on every address of the host (`0.0.0.0`, or none
 * given in a `hostfwd=` of `arguments`/`args`, which QEMU binds to all), as written: other
 * machines on the network can connect to them.
 */
export function openForwards(config: VmConfig): string[] {
  const found = (config.network?.ports ?? [])
    .filter((forward) => ALL_ADDRESSES.has(forward.address))
    .map(formatForward);
  for (const arg of configArgv(config, { diskDir: "/" })) {
    if (!arg.includes("hostfwd=")) continue;
    for (const part of splitOptionText(arg)) {
      if (!part.startsWith("hostfwd=")) continue;
      // hostfwd=[tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport
      const host = part.slice("hostfwd=".length).split("-")[0].split(":");
      if (host.length === 3 && ALL_ADDRESSES.has(host[1])) found.push(part);
    }
  }
  return found;
}
