/**
 * The benchmark charts, as plain SVG text (no plotting library to load or trust): the scaling
 * chart (µs per operation against the number of VMs, log-log, ours vs the OR form vs a scan, one
 * panel per operation) and the command-latency chart (median wall time per command, bars per
 * form). `bench/table.ts` draws them from what it measured and writes them beside RESULTS.md;
 * `deno run -A bench/charts.ts [RESULTS.md]` redraws them from the tables of a written report.
 */
import { fileURLToPath } from "node:url";
import { type CommandLatency, FORMS, LATENCY_COMMANDS } from "./_command_latency.ts";
import { OPERATIONS, VARIANTS } from "./_state_fixture.ts";
import { cellKey, type Matrix } from "./_state_report.ts";

/** One measured point of the scaling chart. */
export interface ScalingPoint {
  operation: string;
  vms: number;
  variant: string;
  us: number;
}

/** One group of bars: e.g. `qvm status, 10,000 VMs` with a bar per form. */
export interface BarGroup {
  label: string;
  bars: { label: string; ms: number }[];
}

/** The file names the charts are written under, beside RESULTS.md. */
export const CHART_FILES = {
  scaling: "scaling.svg",
  latency: "latency.svg",
  scale: "scale.svg",
} as const;

/** One line of a line chart: its label and its points. */
export interface Series {
  label: string;
  points: { x: number; y: number }[];
}

const FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\"";
const PALETTE = ["#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b"];
const VARIANT_STYLE: Record<string, { color: string; dash: string; label: string }> = {
  ours: {
    color: "#1f77b4",
    dash: "",
    label: "ours (id or name first by shape: two indexed lookups)",
  },
  or: { color: "#ff7f0e", dash: "6 3", label: "OR form (WHERE id = ? OR name = ?)" },
  scan: { color: "#d62728", dash: "2 3", label: "forced scan (? IN (id, name))" },
};

function esc(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

function fmtNumber(n: number): string {
  if (n >= 1000) return Math.round(n).toLocaleString("en");
  if (n >= 100) return String(Math.round(n));
  if (n >= 10) return n.toFixed(1).replace(/\.0$/, "");
  return n.toFixed(2).replace(/\.?0+$/, "");
}

function fmtVms(n: number): string {
  return n >= 1000 ? `${n / 1000}k` : String(n);
}

/** The scaling chart: a log-log panel per operation, one line per variant, shared axes. */
export function scalingSvg(points: readonly ScalingPoint[], title?: string): string {
  const operations = [...new Set(points.map((p) => p.operation))];
  const variants = [...new Set(points.map((p) => p.variant))];
  const sizes = [...new Set(points.map((p) => p.vms))].sort((a, b) => a - b);
  if (operations.length === 0 || sizes.length === 0) return emptySvg("no measurements");
  const cols = 3;
  const rows = Math.ceil((operations.length + 1) / cols);
  const pw = 300, ph = 230, top = 48;
  const m = { l: 58, r: 14, t: 26, b: 40 };
  const width = cols * pw, height = top + rows * ph + 8;
  const usValues = points.map((p) => p.us).filter((v) => v > 0);
  const yMin = 10 ** Math.floor(Math.log10(Math.min(...usValues)));
  const yMax = 10 ** Math.ceil(Math.log10(Math.max(...usValues)));
  const xMin = Math.log10(sizes[0]), xMax = Math.log10(sizes.at(-1)!);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" ${FONT} font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">` +
    `${esc(title ?? "µs per operation against number of VMs (log-log)")}</text>`,
  ];
  operations.forEach((operation, i) => {
    const ox = (i % cols) * pw, oy = top + Math.floor(i / cols) * ph;
    const x0 = ox + m.l, x1 = ox + pw - m.r, y0 = oy + ph - m.b, y1 = oy + m.t;
    const sx = (v: number) =>
      xMax === xMin ? (x0 + x1) / 2 : x0 + (Math.log10(v) - xMin) / (xMax - xMin) * (x1 - x0);
    const sy = (v: number) =>
      y0 - (Math.log10(v) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin)) * (y0 - y1);
    out.push(
      `<text x="${(x0 + x1) / 2}" y="${oy + 16}" text-anchor="middle" font-size="12" ` +
        `font-weight="600">${esc(operation)}</text>`,
    );
    for (let d = yMin; d <= yMax; d *= 10) {
      out.push(
        `<line x1="${x0}" y1="${sy(d)}" x2="${x1}" y2="${sy(d)}" stroke="#e5e5e5"/>`,
        `<text x="${x0 - 5}" y="${sy(d) + 4}" text-anchor="end" fill="#555">${fmtNumber(d)}</text>`,
      );
    }
    for (const size of sizes) {
      out.push(
        `<line x1="${sx(size)}" y1="${y0}" x2="${sx(size)}" y2="${y1}" stroke="#f0f0f0"/>`,
        `<text x="${sx(size)}" y="${y0 + 14}" text-anchor="middle" fill="#555">${
          fmtVms(size)
        }</text>`,
      );
    }
    out.push(
      `<rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}" fill="none" ` +
        `stroke="#999"/>`,
      `<text x="${(x0 + x1) / 2}" y="${y0 + 30}" text-anchor="middle" fill="#333">VMs</text>`,
      `<text transform="translate(${ox + 14} ${(y0 + y1) / 2}) rotate(-90)" ` +
        `text-anchor="middle" fill="#333">µs / op</text>`,
    );
    variants.forEach((variant, vi) => {
      const style = VARIANT_STYLE[variant] ??
        { color: PALETTE[vi % PALETTE.length], dash: "", label: variant };
      const line = points.filter((p) => p.operation === operation && p.variant === variant)
        .sort((a, b) => a.vms - b.vms);
      if (line.length === 0) return;
      const path = line.map((p, k) =>
        `${k ? "L" : "M"}${sx(p.vms).toFixed(1)},${sy(p.us).toFixed(1)}`
      ).join(" ");
      out.push(
        `<path d="${path}" fill="none" stroke="${style.color}" stroke-width="2"` +
          `${style.dash ? ` stroke-dasharray="${style.dash}"` : ""}/>`,
        ...line.map((p) =>
          `<circle cx="${sx(p.vms).toFixed(1)}" cy="${sy(p.us).toFixed(1)}" r="3" ` +
          `fill="${style.color}"><title>${esc(`${variant}, ${p.vms} VMs: ${p.us} µs`)}</title>` +
          `</circle>`
        ),
      );
    });
  });
  // The legend takes the cell after the last panel.
  const li = operations.length;
  const lx = (li % cols) * pw + 30, ly = top + Math.floor(li / cols) * ph + 50;
  variants.forEach((variant, vi) => {
    const style = VARIANT_STYLE[variant] ??
      { color: PALETTE[vi % PALETTE.length], dash: "", label: variant };
    const y = ly + vi * 24;
    out.push(
      `<line x1="${lx}" y1="${y}" x2="${lx + 30}" y2="${y}" stroke="${style.color}" ` +
        `stroke-width="2"${style.dash ? ` stroke-dasharray="${style.dash}"` : ""}/>`,
      `<text x="${lx + 38}" y="${y + 4}" fill="#222">${esc(style.label)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** A horizontal bar chart: one block per group, one bar per label (same colour per label). */
export function barsSvg(groups: readonly BarGroup[], title: string): string {
  const labels = [...new Set(groups.flatMap((g) => g.bars.map((b) => b.label)))];
  if (labels.length === 0) return emptySvg("no measurements");
  const max = Math.max(...groups.flatMap((g) => g.bars.map((b) => b.ms)));
  const step = niceStep(max);
  const axisMax = Math.ceil(max / step) * step;
  const barH = 14, gap = 3, groupGap = 14;
  const width = 900;
  const legendW = Math.max(...labels.map((l) => l.length)) * 6.5 + 40;
  const legendCols = Math.max(1, Math.min(labels.length, Math.floor((width - 80) / legendW)));
  const left = 260, right = 70, top = 56 + Math.ceil(labels.length / legendCols) * 18;
  const plotW = width - left - right;
  let y = top;
  const body: string[] = [];
  for (const group of groups) {
    const h = group.bars.length * (barH + gap);
    body.push(
      `<text x="${left - 10}" y="${y + h / 2 + 3}" text-anchor="end" fill="#222">${
        esc(group.label)
      }</text>`,
    );
    for (const bar of group.bars) {
      const w = Math.max(bar.ms / axisMax * plotW, 1);
      const color = PALETTE[labels.indexOf(bar.label) % PALETTE.length];
      body.push(
        `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${color}">` +
          `<title>${esc(`${group.label}, ${bar.label}: ${bar.ms} ms`)}</title></rect>`,
        `<text x="${(left + w + 4).toFixed(1)}" y="${y + barH - 3}" fill="#333">${
          fmtNumber(bar.ms)
        } ms</text>`,
      );
      y += barH + gap;
    }
    y += groupGap;
  }
  const height = y + 36;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" ${FONT} font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">` +
    `${esc(title)}</text>`,
  ];
  labels.forEach((label, i) => {
    const lx = 40 + (i % legendCols) * legendW, ly = 44 + Math.floor(i / legendCols) * 18;
    out.push(
      `<rect x="${lx}" y="${ly - 9}" width="12" height="12" fill="${
        PALETTE[i % PALETTE.length]
      }"/>`,
      `<text x="${lx + 18}" y="${ly + 1}" fill="#222">${esc(label)}</text>`,
    );
  });
  for (let v = 0; v <= axisMax + 1e-9; v += step) {
    const x = left + v / axisMax * plotW;
    out.push(
      `<line x1="${x.toFixed(1)}" y1="${top - 4}" x2="${x.toFixed(1)}" y2="${y - groupGap}" ` +
        `stroke="#e5e5e5"/>`,
      `<text x="${x.toFixed(1)}" y="${y - groupGap + 14}" text-anchor="middle" fill="#555">${
        fmtNumber(v)
      }</text>`,
    );
  }
  out.push(
    `<text x="${left + plotW / 2}" y="${height - 8}" text-anchor="middle" fill="#333">` +
      "median wall time, ms (whole process)</text>",
    ...body,
    "</svg>",
  );
  return out.join("\n") + "\n";
}

/**
 * A line chart on linear axes from 0: one line per series (e.g. ms against running VMs, one line
 * per command), with the axes' titles.
 */
export function linesSvg(
  series: readonly Series[],
  labels: { title: string; x: string; y: string },
): string {
  const points = series.flatMap((s) => s.points);
  if (points.length === 0) return emptySvg("no measurements");
  const width = 760, height = 440;
  const m = { l: 64, r: 24, t: 44, b: 54 };
  const legendH = series.length * 18 + 8;
  const x0 = m.l, x1 = width - m.r, y0 = height - m.b, y1 = m.t + legendH;
  const xStep = niceStep(Math.max(...points.map((p) => p.x)));
  const yStep = niceStep(Math.max(...points.map((p) => p.y)));
  const xMax = Math.ceil(Math.max(...points.map((p) => p.x)) / xStep) * xStep;
  const yMax = Math.ceil(Math.max(...points.map((p) => p.y)) / yStep) * yStep;
  const sx = (v: number) => x0 + v / xMax * (x1 - x0);
  const sy = (v: number) => y0 - v / yMax * (y0 - y1);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" ${FONT} font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">` +
    `${esc(labels.title)}</text>`,
  ];
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    out.push(
      `<line x1="${x0}" y1="${sy(v).toFixed(1)}" x2="${x1}" y2="${sy(v).toFixed(1)}" ` +
        `stroke="#e5e5e5"/>`,
      `<text x="${x0 - 6}" y="${(sy(v) + 4).toFixed(1)}" text-anchor="end" fill="#555">` +
        `${fmtNumber(v)}</text>`,
    );
  }
  for (let v = 0; v <= xMax + 1e-9; v += xStep) {
    out.push(
      `<line x1="${sx(v).toFixed(1)}" y1="${y0}" x2="${sx(v).toFixed(1)}" y2="${y1}" ` +
        `stroke="#f0f0f0"/>`,
      `<text x="${sx(v).toFixed(1)}" y="${y0 + 16}" text-anchor="middle" fill="#555">` +
        `${fmtNumber(v)}</text>`,
    );
  }
  out.push(
    `<rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}" fill="none" stroke="#999"/>`,
    `<text x="${(x0 + x1) / 2}" y="${height - 14}" text-anchor="middle" fill="#333">` +
      `${esc(labels.x)}</text>`,
    `<text transform="translate(18 ${(y0 + y1) / 2}) rotate(-90)" text-anchor="middle" ` +
      `fill="#333">${esc(labels.y)}</text>`,
  );
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const line = [...s.points].sort((a, b) => a.x - b.x);
    const ly = m.t + i * 18 + 6;
    out.push(
      `<line x1="${x0 + 10}" y1="${ly}" x2="${x0 + 40}" y2="${ly}" stroke="${color}" ` +
        `stroke-width="2"/>`,
      `<text x="${x0 + 48}" y="${ly + 4}" fill="#222">${esc(s.label)}</text>`,
      `<path d="${
        line.map((p, k) => `${k ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`)
          .join(" ")
      }" fill="none" stroke="${color}" stroke-width="2"/>`,
      ...line.map((p) =>
        `<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3" fill="${color}">` +
        `<title>${esc(`${s.label}, ${p.x}: ${fmtNumber(p.y)}`)}</title></circle>`
      ),
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

function niceStep(max: number): number {
  const raw = max / 6;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  for (const f of [1, 2, 2.5, 5, 10]) if (raw <= f * mag) return f * mag;
  return 10 * mag;
}

function emptySvg(text: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="400" height="60" ${FONT}>` +
    `<text x="10" y="35">${esc(text)}</text></svg>\n`;
}

/** Cells of the markdown tables in `markdown` whose header has all of `columns`. */
function markdownTables(markdown: string): { header: string[]; rows: string[][] }[] {
  const tables: { header: string[]; rows: string[][] }[] = [];
  const lines = markdown.split("\n");
  const cells = (line: string) =>
    line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!lines[i].trim().startsWith("|") || !/^\|[\s:|-]+\|$/.test(lines[i + 1].trim())) continue;
    const header = cells(lines[i]);
    const rows: string[][] = [];
    let j = i + 2;
    for (; j < lines.length && lines[j].trim().startsWith("|"); j++) rows.push(cells(lines[j]));
    tables.push({ header, rows });
    i = j;
  }
  return tables;
}

const num = (cell: string) => Number(cell.replaceAll(",", "").replace(/[^\d.]/g, ""));

/** The scaling points of a RESULTS.md results table (`operation | VMs | ours µs/op | ...`). */
export function scalingFromMarkdown(markdown: string): ScalingPoint[] {
  const table = markdownTables(markdown).find((t) =>
    t.header[0] === "operation" && t.header.includes("ours µs/op")
  );
  if (!table) return [];
  const columns = table.header.flatMap((h, i) => {
    const m = h.match(/^(\w+) µs\/op$/);
    return m ? [{ variant: m[1], i }] : [];
  });
  return table.rows.flatMap((row) =>
    columns.map(({ variant, i }) => ({
      operation: row[0],
      vms: num(row[1]),
      variant,
      us: num(row[i]),
    }))
  ).filter((p) => p.us > 0 && p.vms > 0);
}

/**
 * Bar groups from a RESULTS.md: the command-latency tables (`command | source ms | ...`, one per
 * database size, a group per command and size) when there are any, else every table with a
 * `median ms` column (a group per table, a bar per row).
 */
export function latencyFromMarkdown(markdown: string): BarGroup[] {
  const groups: BarGroup[] = [];
  const sections = markdown.split(/\n(?=\*\*[\d,]+ VMs\*\*)/);
  for (const section of sections) {
    const size = section.match(/^\*\*([\d,]+) VMs\*\*/)?.[1];
    if (!size) continue;
    const table = markdownTables(section).find((t) => t.header[0] === "command");
    if (!table) continue;
    const forms = table.header.flatMap((h, i) =>
      /^[\w ]+ ms$/.test(h) ? [{ form: h.replace(/ ms$/, ""), i }] : []
    );
    for (const row of table.rows) {
      groups.push({
        label: `${row[0].replaceAll("`", "")}, ${size} VMs`,
        bars: forms.filter(({ i }) => num(row[i]) > 0).map(({ form, i }) => ({
          label: form,
          ms: num(row[i]),
        })),
      });
    }
  }
  if (groups.length > 0) return groups;
  for (const table of markdownTables(markdown)) {
    const at = table.header.indexOf("median ms");
    if (at < 0 || table.header[0] === "runs") continue;
    groups.push({
      label: table.rows[0]?.[0].includes("status") ? "qvm status" : "qvm start",
      bars: table.rows.map((r) => ({
        label: r[0].replaceAll("`", "").replace(/ \(.*\)$/, ""),
        ms: num(r[at]),
      })),
    });
  }
  return groups;
}

/** Writes both charts into `dir`; returns the markdown that shows them. */
export async function writeCharts(
  dir: string,
  data: { scaling: ScalingPoint[]; latency: BarGroup[] },
): Promise<string> {
  await Deno.writeTextFile(`${dir}/${CHART_FILES.scaling}`, scalingSvg(data.scaling));
  await Deno.writeTextFile(
    `${dir}/${CHART_FILES.latency}`,
    barsSvg(data.latency, "Command latency: whole qvm processes against their floors"),
  );
  return chartsMarkdown();
}

/** The markdown that shows the charts from RESULTS.md (they sit beside it). */
export function chartsMarkdown(): string {
  return [
    `![µs per operation against number of VMs, log-log: ours, the OR form and a scan](` +
    `${CHART_FILES.scaling})`,
    "",
    `![Command latency: median wall time of whole qvm processes and their floors](` +
    `${CHART_FILES.latency})`,
  ].join("\n");
}

if (import.meta.main) {
  const results = Deno.args[0] ?? fileURLToPath(new URL("./RESULTS.md", import.meta.url));
  const markdown = await Deno.readTextFile(results);
  const dir = results.includes("/") ? results.slice(0, results.lastIndexOf("/")) : ".";
  await writeCharts(dir, {
    scaling: scalingFromMarkdown(markdown),
    latency: latencyFromMarkdown(markdown),
  });
  console.log(`wrote ${dir}/${CHART_FILES.scaling} and ${dir}/${CHART_FILES.latency}`);
}

/** The scaling points of a measured state matrix. */
export function scalingPoints(matrix: Matrix): ScalingPoint[] {
  return OPERATIONS.flatMap((operation) =>
    matrix.sizes.flatMap((vms) => {
      const cell = matrix.cells.get(cellKey(operation, vms));
      return cell
        ? VARIANTS.map((variant) => ({ operation, vms, variant, us: cell[variant].usPerOp }))
        : [];
    })
  );
}

/** The command-latency bars: a group per command and database size, a bar per form. */
export function latencyGroups(latency: CommandLatency): BarGroup[] {
  return latency.sizes.flatMap((size) =>
    LATENCY_COMMANDS.flatMap((command) => {
      const cells = latency.cells[size]?.[command];
      if (!cells) return [];
      return [{
        label: `qvm ${command}, ${size.toLocaleString("en")} VMs`,
        bars: FORMS.flatMap((form) =>
          cells[form] ? [{ label: form, ms: Math.round(cells[form]!.ms * 10) / 10 }] : []
        ),
      }];
    })
  );
}
