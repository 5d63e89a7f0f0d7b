/** `memory:` and `cpu:`: a guest memory size within bounds, a CPU count or `-smp` text. */
import { UsageError } from "../errors.ts";
import { show } from "./_util.ts";
import { MAX_MEMORY, parseSize, sizeBytes, wholeSize } from "./size.ts";

/** `memory:` as QEMU's `-m` takes it (`512M`, `1.5G` as `1536M`), at most `MAX_MEMORY`. */
export function memoryOf(value: unknown): string {
  const size = parseSize(wholeSize(value), "M");
  if (size === undefined) {
    throw new UsageError(`invalid memory ${show(value)}: use a size like 512M or 2G`);
  }
  if (sizeBytes(size) > sizeBytes(MAX_MEMORY)) {
    throw new UsageError(
      `invalid memory ${show(value)}: more than ${MAX_MEMORY}, which no host can give a guest`,
    );
  }
  return size;
}

/** The keys of QEMU's `-smp` option text (`4,sockets=1,cores=2,threads=2`). */
const SMP_KEYS = new Set([
  "cpus",
  "maxcpus",
  "sockets",
  "dies",
  "clusters",
  "cores",
  "threads",
  "books",
  "drawers",
]);

/** True for `-smp` option text: an optional CPU count, then `key=N` parts of known keys. */
function isSmpText(text: string): boolean {
  const parts = text.split(",");
  if (/^\d+$/.test(parts[0])) parts.shift();
  return parts.every((part) => {
    const [key, value, extra] = part.split("=");
    return extra === undefined && SMP_KEYS.has(key) && /^\d+$/.test(value ?? "");
  });
}

/** `cpu:` is `-smp`: a count from 1 to 1024, or `-smp` text (as maqet, which passes it on as is). */
export function cpuOf(value: unknown): number | string {
  const n = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 1024) return n;
  if (typeof value === "string" && /[=,]/.test(value) && isSmpText(value)) return value;
  throw new UsageError(
    `invalid cpu ${show(value)}: use a whole number from 1 to 1024, or -smp text such as ` +
      "'4,sockets=1,cores=2,threads=2'",
  );
}
