/**
 * The "many running VMs" section of bench/RESULTS.md, written by `bench/scale.ts`: tables, the
 * targets as verdicts, and the markers that let it replace only its own section of the report
 * (`bench/table.ts` keeps it when it rewrites the rest). Every number comes from the run.
 */
import { fmtCount, fmtRatio, formatVerdict, type Verdict } from "./_state_report.ts";

/** The markers around the section in RESULTS.md. */
export const SCALE_BEGIN = "<!-- bench/scale.ts: begin -->";
export const SCALE_END = "<!-- bench/scale.ts: end -->";

/** The whole-process forms compared at each number of running VMs (and at 10,000 stopped). */
export const SCALE_FORMS = [
  "empty deno run",
  "ls --json",
  "ls",
  "status VM",
  "ls --json (source)",
] as const;

/** One of `SCALE_FORMS`. */
export type ScaleForm = typeof SCALE_FORMS[number];

/** The forms timed at 10,000 stopped VMs. */
export const FLOOR_FORMS = [
  "empty deno run",
  "status VM",
  "ls --json",
  "status VM (source)",
  "ls --json (source)",
] as const;

/** One of `FLOOR_FORMS`. */
export type FloorForm = typeof FLOOR_FORMS[number];

/** Medians of one form's rounds. */
export interface Cell {
  ms: number;
  minMs: number;
  cpuMs?: number;
  rssMb?: number;
}

/** One run of a command on many VMs. */
export interface BulkRun {
  /** What ran, e.g. `start` of 100 VMs with one command. */
  label: string;
  command: string;
  vms: number;
  ms: number;
  rssMb?: number;
  code: number;
  /** The 1-minute load average just before it ran. */
  load: number;
}

/** Everything one run of the scale benchmark measured. */
export interface ScaleRun {
  date: string;
  quick: boolean;
  cores: number;
  cpu: string;
  deno: string;
  rounds: number;
  /** `cells[running VMs][form]`. */
  cells: Record<number, Partial<Record<ScaleForm, Cell>>>;
  /** The 1-minute load average while each size was measured. */
  loads: Record<number, number>;
  sizes: number[];
  bulk: BulkRun[];
  floor?: { vms: number; rounds: number; load: number; cells: Partial<Record<FloorForm, Cell>> };
  memory: { availableMb: number; perVmMb: number; note?: string };
  /** `/proc/loadavg` at the start and at the end. */
  loadStart: string;
  loadEnd: string;
}

/** The targets, as the issue set them. */
export const LIMITS = {
  lsRunning: 1.5,
  perVmUs: 50,
  lsRunningRss: 1.3,
  status: 1.25,
  lsStopped: 1.35,
  stopAllS: 10,
  rmAllS: 5,
  start100S: 15,
} as const;

/** The size the running-VM targets are judged at, and how many VMs the start target starts. */
export const TARGET_RUNNING = 500;
export const TARGET_START = 100;
/** The size of the stopped-VM floor. */
export const FLOOR_VMS = 10_000;

function judge(target: string, pass: boolean | undefined, detail: string): Verdict {
  return { status: pass === undefined ? "SKIP" : pass ? "PASS" : "FAIL", target, detail };
}

function cpuNote(a?: Cell, b?: Cell): string {
  if (a?.cpuMs === undefined || b?.cpuMs === undefined) return "";
  return `; CPU time ${a.cpuMs.toFixed(1)} vs ${b.cpuMs.toFixed(1)} ms: ${
    fmtRatio(a.cpuMs / b.cpuMs)
  }`;
}

/**
 * The µs each running VM adds to `form`: the slope between the smallest and largest size, of the
 * median wall time, or with `cpu` of the median CPU time (steadier on a shared machine).
 */
export function perVmUs(
  run: ScaleRun,
  form: ScaleForm,
  options: { cpu?: boolean } = {},
): number | undefined {
  const value = (cell: Cell | undefined) => options.cpu ? cell?.cpuMs : cell?.ms;
  const sizes = run.sizes.filter((n) => value(run.cells[n]?.[form]) !== undefined);
  if (sizes.length < 2) return undefined;
  const lo = sizes[0], hi = sizes.at(-1)!;
  return (value(run.cells[hi][form])! - value(run.cells[lo][form])!) * 1000 / (hi - lo);
}

/** The verdicts of every target of the section. */
export function scaleVerdicts(run: ScaleRun): Verdict[] {
  const out: Verdict[] = [];
  const at = run.cells[TARGET_RUNNING];
  const ls = at?.["ls --json"], empty = at?.["empty deno run"];
  const lsTarget =
    `qvm ls --json with ${TARGET_RUNNING} running VMs ≤ ${LIMITS.lsRunning}x an empty deno run ` +
    "(installed, median wall time)";
  out.push(
    ls && empty
      ? judge(
        lsTarget,
        ls.ms / empty.ms <= LIMITS.lsRunning,
        `${ls.ms.toFixed(1)} vs ${empty.ms.toFixed(1)} ms: ${fmtRatio(ls.ms / empty.ms)}${
          cpuNote(ls, empty)
        }`,
      )
      : judge(lsTarget, undefined, `not measured: ${run.memory.note ?? "no such size"}`),
  );
  const slope = perVmUs(run, "ls --json");
  const cpuSlope = perVmUs(run, "ls --json", { cpu: true });
  const sizes = run.sizes.filter((n) => run.cells[n]?.["ls --json"]);
  out.push(judge(
    `cost per running VM ≤ ${LIMITS.perVmUs} µs (qvm ls --json, installed, median wall time)`,
    slope === undefined ? undefined : slope <= LIMITS.perVmUs,
    slope === undefined
      ? "needs two sizes"
      : `(${run.cells[sizes.at(-1)!]["ls --json"]!.ms.toFixed(1)} − ${
        run.cells[sizes[0]]["ls --json"]!.ms.toFixed(1)
      } ms) / (${sizes.at(-1)} − ${sizes[0]} VMs) = ${slope.toFixed(1)} µs` +
        (cpuSlope === undefined ? "" : `; CPU time ${cpuSlope.toFixed(1)} µs`),
  ));
  const rssTarget =
    `qvm ls --json with ${TARGET_RUNNING} running VMs: peak memory ≤ ${LIMITS.lsRunningRss}x ` +
    "an empty deno run's (installed)";
  out.push(
    ls?.rssMb !== undefined && empty?.rssMb !== undefined
      ? judge(
        rssTarget,
        ls.rssMb / empty.rssMb <= LIMITS.lsRunningRss,
        `${ls.rssMb.toFixed(1)} vs ${empty.rssMb.toFixed(1)} MB: ${
          fmtRatio(ls.rssMb / empty.rssMb)
        }`,
      )
      : judge(rssTarget, undefined, "not measured"),
  );
  const floor = run.floor?.cells;
  const floorTarget = (form: FloorForm, limit: number, what: string) => {
    const vms = run.floor?.vms ?? FLOOR_VMS;
    const target = `${what} at ${fmtCount(vms)} stopped VMs ≤ ${limit}x an empty deno run ` +
      "(installed, median wall time)";
    const cell = floor?.[form], base = floor?.["empty deno run"];
    if (!cell || !base) return judge(target, undefined, "not measured");
    return judge(
      target,
      cell.ms / base.ms <= limit,
      `${cell.ms.toFixed(1)} vs ${base.ms.toFixed(1)} ms: ${fmtRatio(cell.ms / base.ms)}${
        cpuNote(cell, base)
      }`,
    );
  };
  out.push(floorTarget("status VM", LIMITS.status, "qvm status VM"));
  out.push(floorTarget("ls --json", LIMITS.lsStopped, "qvm ls --json"));
  const bulk = (label: string, vms: number, limitS: number) => {
    const target = `${label} of ${vms} VMs ≤ ${limitS} s`;
    const found = run.bulk.find((b) => b.label === label && b.vms === vms);
    if (!found) return judge(target, undefined, "not measured");
    return judge(
      target,
      found.code === 0 && found.ms <= limitS * 1000,
      `${(found.ms / 1000).toFixed(2)} s (exit ${found.code}, load ${found.load.toFixed(1)})`,
    );
  };
  out.push(bulk("start with one command", TARGET_START, LIMITS.start100S));
  out.push(bulk("stop --all", TARGET_RUNNING, LIMITS.stopAllS));
  out.push(bulk("rm --all --force", TARGET_RUNNING, LIMITS.rmAllS));
  return out;
}

function fmtMs(cell: Cell | undefined): string {
  return cell ? cell.ms.toFixed(1) : "–";
}

function ratioOf(a: Cell | undefined, b: Cell | undefined): string {
  return a && b ? fmtRatio(a.ms / b.ms) : "–";
}

function slash(cells: (Cell | undefined)[], pick: (c: Cell) => number | undefined): string {
  return cells.map((c) => {
    const v = c ? pick(c) : undefined;
    return v === undefined ? "–" : v.toFixed(1);
  }).join(" / ");
}

/** The section's markdown, markers included. */
export function scaleMarkdown(run: ScaleRun, chart: string): string {
  const lines = [
    SCALE_BEGIN,
    "",
    "## Many running VMs",
    "",
    `Generated by \`deno task bench:scale${run.quick ? " -- --quick" : ""}\` at ${run.date} ` +
    `(${run.cpu}, ${run.cores} cores, Deno ${run.deno}); do not edit by hand, re-run it. The ` +
    `machine is shared: load average at the start ${run.loadStart}, at the end ${run.loadEnd} ` +
    "(1, 5, 15 minutes).",
    "",
    "Method: real QEMUs (`-machine none -accel tcg -nodefaults`, 16 MiB guest memory, " +
    `~${run.memory.perVmMb} MiB each), started, stopped and removed through the installed qvm ` +
    "(`src/dist/bundle.ts` + `src/dist/install.ts`) with temp data and runtime dirs. At each " +
    "number of running VMs, every form runs once per round in rotating order after one " +
    `warm-up run each, ${run.rounds} rounds, medians; wall time from bare runs, peak memory ` +
    "from a second run under `/usr/bin/time`, CPU time (all threads) from a third under " +
    "`perf stat -e task-clock`. The forms run from an empty folder; `status VM` asks a running " +
    "VM (QMP `query-status`). Bulk commands run once each, timed whole. Memory available at " +
    `the start: ${fmtCount(Math.round(run.memory.availableMb))} MiB` +
    (run.memory.note ? `; ${run.memory.note}` : "") + ".",
    "",
    "### `ls` and `status` against running VMs (installed qvm)",
    "",
    "| running VMs | load | empty deno run ms | ls --json ms | ls ms | status VM ms | ls --json (source) ms | ls --json / empty | ls / empty | status / empty | CPU ms empty / ls --json / ls / status | MB empty / ls --json / ls / status |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const n of run.sizes) {
    const c = run.cells[n] ?? {};
    const main = [c["empty deno run"], c["ls --json"], c["ls"], c["status VM"]];
    lines.push(
      `| ${fmtCount(n)} | ${run.loads[n]?.toFixed(1) ?? "–"} | ${fmtMs(c["empty deno run"])} | ` +
        `${fmtMs(c["ls --json"])} | ${fmtMs(c["ls"])} | ${fmtMs(c["status VM"])} | ` +
        `${fmtMs(c["ls --json (source)"])} | ${ratioOf(c["ls --json"], c["empty deno run"])} | ` +
        `${ratioOf(c["ls"], c["empty deno run"])} | ` +
        `${ratioOf(c["status VM"], c["empty deno run"])} | ${slash(main, (x) => x.cpuMs)} | ` +
        `${slash(main, (x) => x.rssMb)} |`,
    );
  }
  const slopes = (["ls --json", "ls", "status VM", "ls --json (source)"] as const).flatMap((f) => {
    const s = perVmUs(run, f);
    const cpu = perVmUs(run, f, { cpu: true });
    return s === undefined
      ? []
      : [`${f} ${s.toFixed(1)} µs${cpu === undefined ? "" : ` (CPU time ${cpu.toFixed(1)} µs)`}`];
  });
  if (slopes.length) {
    lines.push(
      "",
      `What each running VM adds (slope, smallest to largest size): ${slopes.join(", ")}.`,
    );
  }
  lines.push("", chart, "", "### Commands on many VMs (installed qvm, one run each)", "");
  lines.push(
    "| what | command | VMs | wall s | ms per VM | peak MB | exit | load |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const b of run.bulk) {
    lines.push(
      `| ${b.label} | \`${b.command}\` | ${fmtCount(b.vms)} | ${(b.ms / 1000).toFixed(2)} | ` +
        `${(b.ms / b.vms).toFixed(1)} | ${b.rssMb?.toFixed(1) ?? "–"} | ${b.code} | ` +
        `${b.load.toFixed(1)} |`,
    );
  }
  if (run.floor) {
    const f = run.floor.cells;
    const e = f["empty deno run"];
    lines.push(
      "",
      `### ${fmtCount(run.floor.vms)} stopped VMs (${run.floor.rounds} rounds, load ` +
        `${run.floor.load.toFixed(1)})`,
      "",
      "A database built as bench/table.ts builds its tables' ones; the VM asked about is the " +
        "middle one.",
      "",
      "| form | ms | min ms | / empty | CPU ms | MB |",
      "| --- | ---: | ---: | ---: | ---: | ---: |",
      ...FLOOR_FORMS.map((form) => {
        const c = f[form];
        return `| ${form} | ${fmtMs(c)} | ${c ? c.minMs.toFixed(1) : "–"} | ${ratioOf(c, e)} | ` +
          `${c?.cpuMs?.toFixed(1) ?? "–"} | ${c?.rssMb?.toFixed(1) ?? "–"} |`;
      }),
    );
  }
  lines.push(
    "",
    "### Targets (many running VMs)",
    "",
    "```",
    ...scaleVerdicts(run).map(formatVerdict),
    "```",
    "",
    SCALE_END,
  );
  return lines.join("\n");
}

/** `report` with its scale section replaced by `section` (appended when it has none). */
export function spliceSection(report: string, section: string): string {
  const begin = report.indexOf(SCALE_BEGIN);
  const end = report.indexOf(SCALE_END);
  if (begin === -1 || end < begin) return `${report.trimEnd()}\n\n${section}\n`;
  return report.slice(0, begin) + section + report.slice(end + SCALE_END.length);
}

/** The scale section of an existing report, markers included, or undefined. */
export function sectionOf(report: string): string | undefined {
  const begin = report.indexOf(SCALE_BEGIN);
  const end = report.indexOf(SCALE_END);
  return begin === -1 || end < begin ? undefined : report.slice(begin, end + SCALE_END.length);
}
