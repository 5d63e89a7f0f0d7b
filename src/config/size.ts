/** Sizes as configs write them (`512M`, `1.5G`, `10G`): parsed, made whole, counted in bytes. */

/** Normalizes `512m` → `512M`; a bare number gets `bareUnit`. Undefined when not a positive size. */
export function parseSize(value: unknown, bareUnit: string): string | undefined {
  let text: string;
  if (typeof value === "number" && Number.isSafeInteger(value)) text = String(value);
  else if (typeof value === "string") text = value;
  else return undefined;
  const match = /^(\d+)([KMGT])?$/i.exec(text);
  if (!match) return undefined;
  const digits = match[1].replace(/^0+/, "");
  if (digits === "") return undefined;
  return digits + (match[2]?.toUpperCase() ?? bareUnit);
}

/** `1.5G` → `1536M`: a fraction QEMU's `-m` takes, as a whole number of the largest unit that fits. */
export function wholeSize(value: unknown): unknown {
  const match = typeof value === "string" ? /^(\d+)\.(\d+)([KMGT])$/i.exec(value) : null;
  if (!match) return value;
  const units = "KMGT";
  const scale = 10n ** BigInt(match[2].length);
  const kib = BigInt(match[1] + match[2]) * 1024n ** BigInt(units.indexOf(match[3].toUpperCase()));
  if (kib % scale !== 0n) return value;
  let n = kib / scale;
  let unit = 0;
  while (unit < units.indexOf(match[3].toUpperCase()) && n % 1024n === 0n) {
    n /= 1024n;
    unit++;
  }
  return `${n}${units[unit]}`;
}

/** Bytes in a size as `parseSize` gives it (`16M`, `512`): binary units, as QEMU reads them. */
export function sizeBytes(size: string): bigint {
  const match = /^(\d+)([KMGT])?$/.exec(size);
  if (!match) throw new RangeError(`not a size: ${size}`);
  const power = match[2] === undefined ? 0 : "KMGT".indexOf(match[2]) + 1;
  return BigInt(match[1]) * 1024n ** BigInt(power);
}

/** The most guest memory qvm accepts: far beyond any host, and what QEMU's x86 machines address. */
export const MAX_MEMORY = "16T";
