/**
 * The NoCloud seed qvm builds at each start of a VM with a `cloud_init:` section: `meta-data`
 * (instance id, host name), `user-data` (generated `#cloud-config`, or the config's verbatim
 * `user_data`) and `network-config` (DHCP on the NIC qvm adds, matched by its MAC address).
 * The files are written to a folder and packed into an ISO 9660 image labelled `cidata` with
 * genisoimage or xorriso; on a host with neither, QEMU's vvfat driver serves the folder itself.
 */
import { sha256Hex } from "../sha256.ts";
import { QvmError } from "../errors.ts";
import { type CloudInitConfig, escapeOptionValue, isSystemAccount } from "../config/mod.ts";
import { clearForeignFile } from "./ssh.ts";

/** The volume label cloud-init's NoCloud data source looks for. */
export const SEED_LABEL = "cidata";

/** What the seed is made from, besides the config section. */
export interface SeedInput {
  /** The VM name: the default host name. */
  name: string;
  section: CloudInitConfig;
  /** Login user when the section names none. */
  defaultUser: string;
  /** Keys added to the user's: qvm's own, and `~/.ssh/*.pub` when the section lists none. */
  keys: { own: string; home: string[] };
  /** MAC address of the VM's NIC, or undefined when the VM has no `network:` section. */
  mac?: string;
}

/** `meta-data`, `user-data` and (with a NIC) `network-config`, by file name. */
export type SeedFiles = Record<string, string>;

/**
 * The instance id: a hash of the `cloud_init:` section and the host name it yields, so it changes
 * (and cloud-init runs its once-per-instance modules again) exactly when the section changes.
 */
export function instanceId(name: string, section: CloudInitConfig): string {
  const canonical = JSON.stringify(sortKeys({ hostname: section.hostname ?? name, section }));
  return `qvm-${sha256Hex(canonical).slice(0, 16)}`;
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.keys(value).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/** The host name the guest gets: the section's, else the VM name made into a valid host name. */
export function seedHostname(name: string, section: CloudInitConfig): string {
  if (section.hostname) return section.hostname;
  const cleaned = name.replace(/[^A-Za-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63);
  return cleaned.replace(/-+$/, "") || "qvm";
}

/** The login user the seed creates (and `qvm ssh` logs in as). */
export function seedUser(section: CloudInitConfig, defaultUser: string): string {
  return section.user ?? defaultUser;
}

/**
 * The seed's files. Generated user-data is JSON under a `#cloud-config` line (JSON is YAML), so
 * every value is quoted safely whatever it holds.
 */
export function seedFiles(input: SeedInput): SeedFiles {
  const { section } = input;
  const hostname = seedHostname(input.name, section);
  const files: SeedFiles = {
    "meta-data": JSON.stringify(
      {
        "instance-id": instanceId(input.name, section),
        "local-hostname": hostname,
      },
      null,
      2,
    ) + "\n",
  };
  if (section.user_data !== undefined) {
    files["user-data"] = section.user_data;
  } else {
    const keys = [input.keys.own, ...(section.ssh_authorized_keys ?? input.keys.home)];
    const user = {
      name: seedUser(section, input.defaultUser),
      shell: "/bin/bash",
      sudo: "ALL=(ALL) NOPASSWD:ALL",
      lock_passwd: true,
      ssh_authorized_keys: [...new Set(keys.map((k) => k.trim()))],
    };
    const doc: Record<string, unknown> = {
      hostname,
      preserve_hostname: false,
      manage_etc_hosts: true,
      users: [user],
    };
    if (section.packages?.length) doc.packages = section.packages;
    if (section.runcmd?.length) doc.runcmd = section.runcmd;
    files["user-data"] = "#cloud-config\n" + JSON.stringify(doc, null, 2) + "\n";
  }
  if (input.mac) {
    files["network-config"] = JSON.stringify(
      {
        version: 2,
        ethernets: {
          eth0: { match: { macaddress: input.mac }, "set-name": "eth0", dhcp4: true },
        },
      },
      null,
      2,
    ) + "\n";
  }
  return files;
}

/** How the seed reaches the guest. */
export type SeedMedium = { kind: "iso"; tool: string; file: string } | {
  kind: "vvfat";
  dir: string;
};

/** The first of genisoimage and xorriso on PATH, or undefined. */
export function findIsoTool(): string | undefined {
  const dirs = (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":").filter(Boolean);
  for (const tool of ["genisoimage", "xorriso"]) {
    for (const dir of dirs) {
      try {
        if (Deno.statSync(`${dir}/${tool}`).isFile) return `${dir}/${tool}`;
      } catch { /* next */ }
    }
  }
  return undefined;
}

/** argv of the ISO tool that packs `files` (paths) into `output`, labelled `cidata`. */
export function isoArgv(tool: string, options: { files: string[]; output: string }): string[] {
  const common = ["-output", options.output, "-volid", SEED_LABEL, "-joliet", "-rock"];
  if (tool.endsWith("xorriso")) {
    return [tool, "-as", "mkisofs", "-quiet", ...common, ...options.files];
  }
  return [tool, "-quiet", ...common, ...options.files];
}

/** QEMU options attaching the seed read-only on virtio. */
export function seedDriveArgv(medium: SeedMedium): string[] {
  if (medium.kind === "iso") {
    return ["-drive", `file=${escapeOptionValue(medium.file)},if=virtio,format=raw,readonly=on`];
  }
  return [
    "-drive",
    `if=virtio,format=raw,readonly=on,file.driver=vvfat,file.dir=${
      escapeOptionValue(medium.dir)
    },` +
    `file.label=${SEED_LABEL}`,
  ];
}

/**
 * Writes `files` into `dir` (replacing what an earlier start left) and makes the medium:
 * `<dir>/../cidata.iso` with an ISO tool, else the folder for vvfat.
 */
export async function writeSeed(dir: string, files: SeedFiles): Promise<SeedMedium> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const paths: string[] = [];
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text, { mode: 0o600 });
    paths.push(`${dir}/${name}`);
  }
  const tool = findIsoTool();
  if (!tool) return { kind: "vvfat", dir };
  const output = `${dir.replace(/\/[^/]+$/, "")}/${SEED_LABEL}.iso`;
  clearForeignFile(output); // the ISO tool writes by path: never through a link
  const argv = isoArgv(tool, { files: paths, output });
  const result = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!result.success) {
    const message = new TextDecoder().decode(result.stderr).trim().split("\n")[0];
    throw new QvmError(`could not build the cloud-init seed with ${tool}: ${message}`);
  }
  return { kind: "iso", tool, file: output };
}

/**
 * The login name of the user running qvm (cloud_init's default user); `qvm` when that is root or
 * another account the guest keeps for itself.
 */
export function invokingUser(): string {
  const name = Deno.env.get("USER") ?? Deno.env.get("LOGNAME") ?? "";
  return /^[a-z_][a-z0-9_-]{0,31}$/.test(name) && !isSystemAccount(name) ? name : "qvm";
}
