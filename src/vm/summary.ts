/**
 * A VM's configuration summary (`qvm info`): what it would run with, read from its config and the
 * file layout alone, never from QEMU. Small on purpose: `info` loads nothing else below cli/.
 */
import type { Dirs, VmRecord } from "../state/mod.ts";
import { ROOT_DRIVE, vmDiskFile, vmPaths } from "../vm_files.ts";

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
