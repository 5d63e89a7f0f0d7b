/**
 * The image catalog: short names (`debian-12`, `ubuntu-24.04`, ...) for the distributions'
 * official x86_64 cloud images and the checksum files published beside them. A catalog file named
 * by `$QVM_CATALOG` (YAML or JSON: a map of name → `{url, checksums?, sha256?, format?,
 * description?}`) adds names or replaces built-in ones, e.g. to serve images from a local mirror.
 */
import { readDataFile } from "../config/mod.ts";
import { NotFoundError, UsageError } from "../errors.ts";
import { parseSha256 } from "./checksums.ts";

/** One catalog name. */
export interface CatalogEntry {
  name: string;
  url: string;
  /** The checksum file that lists the image; absent: SHA256SUMS, then SHA512SUMS, beside it. */
  checksums?: string;
  /** The image's SHA-256, when known in advance (then no checksum file is fetched). */
  sha256?: string;
  format: "qcow2" | "raw";
  description: string;
}

/** The environment variable naming a catalog file. */
export const CATALOG_ENV = "QVM_CATALOG";

const DEBIAN = "https://cloud.debian.org/images/cloud";
const UBUNTU = "https://cloud-images.ubuntu.com";

/** The built-in names: each distribution's latest build of a release, amd64, qcow2. */
export const BUILTIN_CATALOG: readonly CatalogEntry[] = [
  {
    name: "debian-12",
    url: `${DEBIAN}/bookworm/latest/debian-12-genericcloud-amd64.qcow2`,
    checksums: `${DEBIAN}/bookworm/latest/SHA512SUMS`,
    format: "qcow2",
    description: "Debian 12 (bookworm), generic cloud image",
  },
  {
    name: "debian-13",
    url: `${DEBIAN}/trixie/latest/debian-13-genericcloud-amd64.qcow2`,
    checksums: `${DEBIAN}/trixie/latest/SHA512SUMS`,
    format: "qcow2",
    description: "Debian 13 (trixie), generic cloud image",
  },
  {
    name: "ubuntu-24.04",
    url: `${UBUNTU}/noble/current/noble-server-cloudimg-amd64.img`,
    checksums: `${UBUNTU}/noble/current/SHA256SUMS`,
    format: "qcow2",
    description: "Ubuntu 24.04 LTS (noble), server cloud image",
  },
  {
    name: "ubuntu-22.04",
    url: `${UBUNTU}/jammy/current/jammy-server-cloudimg-amd64.img`,
    checksums: `${UBUNTU}/jammy/current/SHA256SUMS`,
    format: "qcow2",
    description: "Ubuntu 22.04 LTS (jammy), server cloud image",
  },
];

const NAME = /^[a-z0-9][a-z0-9._-]{0,40}$/;
const ENTRY_KEYS = new Set(["url", "checksums", "sha256", "format", "description"]);

/** True for an `http://` or `https://` URL. */
export function isHttpUrl(text: string): boolean {
  return /^https?:\/\/[^/\s]+/i.test(text);
}

function entryOf(file: string, name: string, value: unknown): CatalogEntry {
  const where = `${file}: catalog entry '${name}'`;
  if (!NAME.test(name)) {
    throw new UsageError(`${where}: a name is lowercase letters, digits, '.', '_' and '-'`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`${where}: expected a map with url:`);
  }
  const raw = value as Record<string, unknown>;
  const unknown = Object.keys(raw).find((k) => !ENTRY_KEYS.has(k));
  if (unknown) throw new UsageError(`${where}: unknown key '${unknown}'`);
  const url = raw.url;
  if (typeof url !== "string" || !isHttpUrl(url)) {
    throw new UsageError(`${where}: url must be an http:// or https:// URL`);
  }
  if (
    raw.checksums !== undefined && (typeof raw.checksums !== "string" || !isHttpUrl(raw.checksums))
  ) {
    throw new UsageError(`${where}: checksums must be the http(s) URL of a checksum file`);
  }
  if (raw.sha256 !== undefined && (typeof raw.sha256 !== "string" || !parseSha256(raw.sha256))) {
    throw new UsageError(`${where}: sha256 must be 64 hex digits`);
  }
  const format = raw.format ?? "qcow2";
  if (format !== "qcow2" && format !== "raw") {
    throw new UsageError(`${where}: format must be qcow2 or raw`);
  }
  return {
    name,
    url,
    ...(typeof raw.checksums === "string" ? { checksums: raw.checksums } : {}),
    ...(typeof raw.sha256 === "string" ? { sha256: parseSha256(raw.sha256)!.hex } : {}),
    format,
    description: typeof raw.description === "string" ? raw.description : url,
  };
}

/** The catalog: the built-in names, with the file named by `$QVM_CATALOG` on top. */
export async function loadCatalog(): Promise<CatalogEntry[]> {
  const entries = new Map(BUILTIN_CATALOG.map((e) => [e.name, e]));
  const file = Deno.env.get(CATALOG_ENV);
  if (file) {
    const data = await readDataFile(file, { what: `catalog ($${CATALOG_ENV})` });
    if (data !== null && data !== undefined) {
      if (typeof data !== "object" || Array.isArray(data)) {
        throw new UsageError(`${file}: a catalog is a map of names to {url: ...}`);
      }
      for (const [name, value] of Object.entries(data as Record<string, unknown>)) {
        entries.set(name, entryOf(file, name, value));
      }
    }
  }
  return [...entries.values()];
}

/** The catalog entry called `name`; a NotFoundError listing the names when there is none. */
export function catalogEntry(catalog: readonly CatalogEntry[], name: string): CatalogEntry {
  const entry = catalog.find((e) => e.name === name);
  if (entry) return entry;
  throw new NotFoundError(
    `unknown image '${name}': not a file, an http(s) URL, nor a catalog name (${
      catalog.map((e) => e.name).join(", ")
    })`,
  );
}
