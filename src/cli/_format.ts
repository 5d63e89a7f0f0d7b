/** Output helpers shared by the listing commands: aligned tables and status colours. */
import { useColor } from "./context.ts";
import { lazyImport } from "../lazy.ts";

/**
 * Progress lines on a terminal (the line, and what it says for a start or stop), loaded only by
 * the commands that draw them.
 */
export async function progressModule(): Promise<
  typeof import("../progress.ts") & typeof import("./_progress.ts")
> {
  const [line, views] = await Promise.all([
    lazyImport<typeof import("../progress.ts")>("src/progress.ts"),
    lazyImport<typeof import("./_progress.ts")>("src/cli/_progress.ts"),
  ]);
  return { ...line, ...views };
}

const COLORS: Record<string, string> = {
  running: "32",
  paused: "33",
  frozen: "33",
  starting: "36",
  stopping: "36",
  unresponsive: "31",
  "internal-error": "31",
  "guest-panicked": "31",
  shutdown: "33",
  failed: "31",
};

const ESC = String.fromCharCode(27);
const ANSI = new RegExp(`${ESC}\\[[0-9;]*m`, "g");

/** `status`, coloured on a TTY (never with NO_COLOR). */
export function paintStatus(status: string): string {
  const code = COLORS[status];
  return code && useColor() ? `${ESC}[${code}m${status}${ESC}[0m` : status;
}

/** Rows as an aligned text table; `header` first. Colour codes do not count toward widths. */
export function table(header: string[], rows: string[][]): string {
  const visible = (s: string) => s.replace(ANSI, "").length;
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => visible(r[i] ?? ""))));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c + " ".repeat(widths[i] - visible(c))).join(
      "  ",
    ).trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
