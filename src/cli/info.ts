/**
 * `qvm info`: a VM's configuration summary (what it would run with), without touching QEMU: its
 * disks (the root overlay of `image:` first), image, network forwards, and whether it has cloud_init.
 */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import type { VmRecord } from "../state/mod.ts";
import type { Dirs } from "../state/mod.ts";
import { ROOT_DRIVE, vmDiskFile, vmPaths } from "../vm_files.ts";

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "info",
  summary: "show a VM's configuration summary",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {},
  examples: ["qvm info web1", "qvm info web1 --json"],
};

/** A forward as `qvm ports` prints it: `127.0.0.1:2222 -> 22/tcp`. */
function forwardText(f: { address: string; host: number | "auto"; guest: number; proto: string }) {
  return `${f.address}:${f.host} -> ${f.guest}/${f.proto}`;
}

/** The summary as a JSON-ready object with stable keys. */
export function summarize(dirs: Dirs, vm: VmRecord): Record<string, unknown> {
  const c = vm.config;
  const paths = vmPaths(dirs, vm.id);
  const diskDir = paths.diskDir;
  const root = c.image === undefined ? [] : [{
    name: ROOT_DRIVE,
    type: "qcow2",
    file: paths.rootOverlay,
    size: null,
    interface: "virtio",
    backing_file: c.image,
  }];
  return {
    id: vm.id,
    name: vm.name,
    config_path: vm.configPath,
    binary: c.binary ?? "qemu-system-x86_64",
    memory: c.memory ?? null,
    cpu: c.cpu ?? null,
    display: c.display ?? null,
    vga: c.vga ?? null,
    arguments: c.arguments.length,
    args: c.args.length,
    image: c.image ?? null,
    network: c.network ? c.network.ports.map(forwardText) : null,
    cloud_init: c.cloud_init !== undefined,
    storage: [
      ...root,
      ...c.storage.map((s) =>
        s.type === "virtfs"
          ? { name: s.name, type: s.type, path: s.path, mount_tag: s.mount_tag }
          : {
            name: s.name,
            type: s.type,
            file: vmDiskFile(diskDir, s),
            size: s.size ?? null,
            interface: s.interface,
            backing_file: s.backing_file ?? null,
          }
      ),
    ],
  };
}

/** Prints the summary as `key: value` lines or JSON. */
export function run(ctx: Context, args: ParsedArgs): number {
  const vm = ctx.store.require(args.positionals[0]);
  const info = summarize(ctx.dirs, vm);
  if (ctx.json) {
    ctx.outJson(info);
    return 0;
  }
  const lines: string[] = [];
  for (const [key, value] of Object.entries(info)) {
    if (key === "storage") continue;
    if (key === "network" && Array.isArray(value)) {
      lines.push(`network: user${value.length > 0 ? `, forwards ${value.join(", ")}` : ""}`);
    } else if (key === "cloud_init") lines.push(`cloud_init: ${value ? "set" : "-"}`);
    else lines.push(`${key}: ${value ?? "-"}`);
  }
  const storage = info.storage as Record<string, unknown>[];
  lines.push(`storage: ${storage.length === 0 ? "none" : ""}`.trimEnd());
  for (const s of storage) {
    const over = s.backing_file ? ` over ${s.backing_file}` : "";
    lines.push(
      s.type === "virtfs"
        ? `  ${s.name}: virtfs ${s.path} (tag ${s.mount_tag})`
        : `  ${s.name}: ${s.type} ${s.size ?? "(backing file's size)"} ${s.interface} ${s.file}` +
          over,
    );
  }
  ctx.out(lines.join("\n"));
  return 0;
}
