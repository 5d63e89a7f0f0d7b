/**
 * `doctor`'s checks of what the host provides: the QEMU binaries, virsh, a tool that builds
 * cloud-init seed ISOs, and KVM.
 */
import { DEFAULT_BINARY } from "../../qemu/launch.ts";
import { findIsoTool } from "../../cloud/seed.ts";
import { type Finding, okFinding } from "./finding.ts";

/** The host's tools and KVM, in the order doctor reports them. */
export async function hostFindings(): Promise<Finding[]> {
  return [
    ...await Promise.all([
      binaryFinding("qemu_system", DEFAULT_BINARY, "qemu-system-x86 (apt-get install ...)"),
      binaryFinding("qemu_img", "qemu-img", "qemu-utils (apt-get install qemu-utils)"),
      virshFinding(),
    ]),
    seedToolFinding(),
    kvmFinding(),
  ];
}

/** `binary --version`'s output, or undefined when the binary cannot be run at all. */
async function version(binary: string): Promise<Deno.CommandOutput | undefined> {
  try {
    return await new Deno.Command(binary, {
      args: ["--version"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound) && !(err instanceof Deno.errors.PermissionDenied)) {
      throw err;
    }
    return undefined;
  }
}

/** A binary qvm runs: there, and answering `--version` (its first line is reported). */
async function binaryFinding(check: string, binary: string, pkg: string): Promise<Finding> {
  const why = check === "qemu_img"
    ? "qvm needs it to create disks, take snapshots and read images"
    : "qvm cannot start a VM without it";
  const output = await version(binary);
  if (!output) {
    return { check, status: "problem", what: `${binary} not found`, why, fix: `install ${pkg}` };
  }
  const text = new TextDecoder().decode(output.success ? output.stdout : output.stderr);
  const first = text.split("\n").find((l) => l.trim() !== "")?.trim() ?? "";
  if (!output.success) {
    return {
      check,
      status: "problem",
      what: `${binary} --version failed: ${first || `exit status ${output.code}`}`,
      why,
      fix: `reinstall ${pkg}`,
    };
  }
  return okFinding(check, `${binary}: ${first}`);
}

/** virsh (libvirt-clients) is optional: only `export --to URI` needs it; missing is a warning. */
async function virshFinding(): Promise<Finding> {
  const found = await binaryFinding("virsh", "virsh", "libvirt-clients");
  if (found.status === "ok") return found;
  return {
    ...found,
    status: "warning",
    why: "only 'qvm export --to URI' needs it (handing VMs to libvirt)",
    fix: "apt-get install libvirt-clients, if you hand VMs to libvirt",
  };
}

/** A tool that builds cloud-init seed ISOs; without one qvm serves the seed with QEMU's vvfat. */
function seedToolFinding(): Finding {
  const tool = findIsoTool(); // the very tool start would build a seed with
  if (tool) {
    const name = tool.slice(tool.lastIndexOf("/") + 1);
    return okFinding("cloud_seed", `${name} found: cloud-init seeds are built as ISO images`);
  }
  return {
    check: "cloud_seed",
    status: "warning",
    what: "neither genisoimage nor xorriso is installed",
    why: "cloud-init seeds are then served by QEMU's vvfat driver, which works but is less usual",
    fix: "apt-get install genisoimage, if you use cloud_init",
  };
}

/** /dev/kvm there and openable read/write; without it guests run under TCG (a warning). */
function kvmFinding(): Finding {
  const check = "kvm";
  const why = "without KVM guests run under TCG emulation, many times slower";
  try {
    Deno.openSync("/dev/kvm", { read: true, write: true }).close();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      return {
        check,
        status: "warning",
        what: "/dev/kvm does not exist",
        why,
        fix: "enable virtualization in the firmware and load kvm_intel or kvm_amd",
      };
    }
    return {
      check,
      status: "warning",
      what: `/dev/kvm cannot be opened read/write (${(err as Error).name})`,
      why,
      fix: "add your user to the kvm group (then log in again)",
    };
  }
  return okFinding(
    check,
    "/dev/kvm exists and opens read/write (whether guests run well on it shows only when " +
      "one starts)",
  );
}
