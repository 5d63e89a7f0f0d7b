/**
 * A libvirt domain as a qvm config: the reverse of `export.ts` for what qvm maps (memory, vCPUs,
 * accelerator, machine, kernel boot, file disks, 9p shares, `<qemu:commandline>`). Pure. What the
 * domain has that qvm cannot carry is listed in `notImported`, never dropped in silence.
 */
import { UsageError } from "../errors.ts";
import { isPublicKeyLine, validateConfig, type VmConfig } from "../config/mod.ts";
import { type ImportedDomain, readDomain } from "./_import_domain.ts";
import { domainXml, QVM_NS, QVM_RUNTIME_NS } from "./export.ts";
import { child, childElements, parseXml, textOf, type XmlElement, XmlSyntaxError } from "./xml.ts";

export type { ImportedDomain } from "./_import_domain.ts";

/** A memory size in KiB (`2G` → 2097152), to compare sizes written in different units. */
function kibOf(size: unknown): string | undefined {
  const match = typeof size === "string" ? /^(\d+)([KMGT])$/.exec(size) : null;
  if (!match) return undefined;
  return String(BigInt(match[1]) * 1024n ** BigInt("KMGT".indexOf(match[2])));
}

/**
 * A reading of a domain in the form libvirt's own XML (`virsh dumpxml`) and qvm's export agree on:
 * memory in KiB, the machine alias for its versioned name (`pc-q35-7.2` is `q35`), QEMU's
 * defaults (machine `pc`, the host's `/usr/bin/qemu-system-<arch>`) left out.
 */
function comparable(read: ImportedDomain): string {
  const config = { ...read.config };
  config.memory = kibOf(config.memory) ?? config.memory;
  if (typeof config.binary === "string" && /^\/usr\/bin\/qemu-system-x86_64$/.test(config.binary)) {
    delete config.binary;
  }
  config.arguments = (config.arguments as unknown[]).flatMap((item) => {
    const machine = (item as { machine?: unknown }).machine;
    if (typeof machine !== "string") return [item];
    const alias = machine.replace(/^pc-i440fx-[\d.]+$/, "pc").replace(/^pc-q35-[\d.]+$/, "q35");
    return alias === "pc" ? [] : [{ machine: alias }];
  });
  return JSON.stringify({ config, notes: read.notImported });
}

/** qvm's elements in `<metadata>` by local name (`config`, `runtime`), parsed as JSON. */
function keptJson(root: XmlElement): Record<string, unknown> {
  const kept: Record<string, unknown> = {};
  for (const node of childElements(child(root, "metadata"))) {
    const [prefix, local] = node.name.includes(":") ? node.name.split(":") : [undefined, node.name];
    const ns = prefix === undefined ? node.attrs.xmlns : node.attrs[`xmlns:${prefix}`];
    if (ns !== QVM_NS && ns !== QVM_RUNTIME_NS) continue;
    try {
      kept[local] = JSON.parse(textOf(node) ?? "");
    } catch { /* not qvm's JSON: ignored */ }
  }
  return kept;
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Refuses a kept config whose `cloud_init` names host files (a `user_data` file, a `.pub` file):
 * validating it would read that file of this host into the guest's seed. qvm's own export always
 * holds their text.
 */
function refuseHostFiles(kept: unknown): void {
  const section = isMap(kept) ? kept.cloud_init : undefined;
  if (!isMap(section)) return;
  const files: string[] = [];
  const userData = section.user_data;
  if (typeof userData === "string" && !userData.startsWith("#") && !userData.includes("\n")) {
    files.push(`cloud_init.user_data '${userData}'`);
  }
  if (Array.isArray(section.ssh_authorized_keys)) {
    for (const item of section.ssh_authorized_keys) {
      if (typeof item === "string" && !isPublicKeyLine(item)) {
        files.push(`cloud_init.ssh_authorized_keys '${item}'`);
      }
    }
  }
  if (files.length > 0) {
    throw new UsageError(
      `the domain's qvm config names a file of this host as ${files[0]}: a domain must carry ` +
        "the text itself",
    );
  }
}

/** The config qvm kept in `<metadata>`, if any and valid. */
function keptConfig(root: XmlElement): VmConfig | undefined {
  const kept = keptJson(root).config;
  if (kept === undefined) return undefined;
  refuseHostFiles(kept);
  try {
    return validateConfig(kept as Record<string, unknown>);
  } catch {
    return undefined;
  }
}

/**
 * Reads a domain XML document into a qvm config. Throws a UsageError (exit 3) when the text is not
 * XML, not a `<domain>`, or not a QEMU domain. When the XML still says exactly what qvm exported,
 * the config kept in its metadata is returned (`exact`), so the round trip keeps qvm's spelling.
 */
export function domainToConfig(text: string): ImportedDomain {
  let root: XmlElement;
  try {
    root = parseXml(text);
  } catch (err) {
    if (err instanceof XmlSyntaxError) throw new UsageError(`not XML: ${err.message}`);
    throw err;
  }
  if (root.name !== "domain") {
    throw new UsageError(`not a libvirt domain: the root element is <${root.name}>, not <domain>`);
  }
  const read = readDomain(root);
  if (read.name === "") throw new UsageError("not a libvirt domain: it has no <name>");
  const kept = keptConfig(root);
  if (kept === undefined) return read;
  const emulator = textOf(child(child(root, "devices"), "emulator"));
  try {
    const runtime = keptJson(root).runtime;
    const argv = Array.isArray(runtime) && runtime.every((a) => typeof a === "string")
      ? runtime
      : [];
    const again = domainXml(
      { id: read.uuid ?? "", name: read.name, config: kept },
      { diskDir: "/", emulator, cloud: { argv, files: [] } },
    );
    const reread = readDomain(parseXml(again.xml));
    if (comparable(reread) === comparable(read)) {
      // As written (validated again by the caller), not as validated here.
      const { name: _, ...config } = keptJson(root).config as Record<string, unknown>;
      // Everything the XML says is in the kept config: nothing is left out.
      return { ...read, config: config as Record<string, unknown>, notImported: [], exact: true };
    }
  } catch { /* the kept config does not describe this XML: read the XML alone */ }
  return read;
}
