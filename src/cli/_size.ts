/** Byte counts as people read them (`32M`, `1.5G`), for the storage tables. */

const UNITS = ["", "K", "M", "G", "T", "P"];

/** `bytes` in binary units with at most one decimal: 0 → `0`, 33554432 → `32M`, 1536 → `1.5K`. */
export function formatSize(bytes: number | null): string {
  if (bytes === null || !Number.isFinite(bytes)) return "-";
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = unit === 0 || Number.isInteger(value) ? String(value) : value.toFixed(1);
  return `${text.replace(/\.0$/, "")}${UNITS[unit]}`;
}
