/**
 * Checksum files as distributions publish them beside their cloud images: `SHA256SUMS` and
 * `SHA512SUMS` in coreutils' form (`HEX  NAME`, `HEX *NAME` for binary mode) or BSD's
 * (`SHA256 (NAME) = HEX`, as Fedora's `CHECKSUM` files). Pure: parsing and looking up only.
 */

/** The digests qvm verifies images with. */
export type DigestAlgorithm = "sha256" | "sha512";

/** An expected digest of a file. */
export interface Checksum {
  algorithm: DigestAlgorithm;
  /** Lowercase hex. */
  hex: string;
}

/** One line of a checksum file. */
export interface ChecksumLine extends Checksum {
  name: string;
}

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

/** The algorithm whose digests have `length` hex digits. */
function algorithmOfLength(length: number): DigestAlgorithm | undefined {
  return length === 64 ? "sha256" : length === 128 ? "sha512" : undefined;
}

/**
 * The lines of a checksum file that name a SHA-256 or SHA-512 digest (others, comments and
 * signatures are skipped). Names lose a leading `./`.
 */
export function parseChecksums(text: string): ChecksumLine[] {
  const out: ChecksumLine[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    const bsd = /^(SHA256|SHA512) \((.+)\) ?= ?([0-9A-Fa-f]+)\s*$/.exec(line);
    if (bsd) {
      const algorithm = bsd[1].toLowerCase() as DigestAlgorithm;
      if (bsd[3].length === HEX_LENGTH[algorithm]) {
        out.push({ algorithm, hex: bsd[3].toLowerCase(), name: cleanName(bsd[2]) });
      }
      continue;
    }
    const gnu = /^([0-9A-Fa-f]+) [ *](.+)$/.exec(line);
    if (!gnu) continue;
    const algorithm = algorithmOfLength(gnu[1].length);
    if (algorithm) out.push({ algorithm, hex: gnu[1].toLowerCase(), name: cleanName(gnu[2]) });
  }
  return out;
}

function cleanName(name: string): string {
  return name.trim().replace(/^\.\//, "");
}

/** The digest `lines` give for file `name` (the strongest one when both are listed). */
export function checksumFor(lines: readonly ChecksumLine[], name: string): Checksum | undefined {
  const matching = lines.filter((l) => l.name === name);
  const best = matching.find((l) => l.algorithm === "sha512") ?? matching[0];
  return best ? { algorithm: best.algorithm, hex: best.hex } : undefined;
}

/** Parses `--sha256 HEX` (64 hex digits, any case); undefined when it is not one. */
export function parseSha256(text: string): Checksum | undefined {
  const hex = text.trim().replace(/^sha256:/i, "");
  return /^[0-9A-Fa-f]{64}$/.test(hex)
    ? { algorithm: "sha256", hex: hex.toLowerCase() }
    : undefined;
}

/** `sha512:0123456789ab…` for messages: the algorithm and the first 12 hex digits. */
export function shortChecksum(sum: Checksum): string {
  return `${sum.algorithm}:${sum.hex.slice(0, 12)}…`;
}
