/**
 * `deno run -A bench/table.ts [--quick] [--out PATH]`: measures the state matrix (get by id, get by
 * name, update status, update config, remove × 10…100,000 VMs × ours / or / scan) with its own
 * timing loop, prints the markdown table, the query plans and the target verdicts, times
 * `qvm status` end to end against an empty `deno run`, and writes everything, including a
 * comparison with the seed's claims generated from the numbers, to `bench/RESULTS.md`, and the
 * scaling and command-latency charts (`bench/charts.ts`) as SVG files beside it.
 *
 * `--quick`: sizes 10, 100, 1,000 and short time boxes; writes a file only when `--out` is given.
 * `QVM_BENCH_SIZES=10,100` overrides the sizes in either mode.
 * `--latency-only`: only the command-latency section (source, installed, standalone and the
 * floors), at `$QVM_BENCH_SIZES` or its usual sizes; prints it, writes nothing. `--rounds N`: rounds
 * of that comparison (default 15, 5 with `--quick`); more rounds steady its medians on a busy host.
 */
import { fileURLToPath } from "node:url";
import { SQL } from "../src/state/mod.ts";
import {
  benchSizes,
  createPopulation,
  disposePopulation,
  makeOperation,
  OPERATIONS,
  type Population,
  queryPlan,
  REMOVE_METHOD,
  type Variant,
  VARIANTS,
  variantStatements,
  WRITE_KEY_METHOD,
} from "./_state_fixture.ts";
import { measureInterleaved, type TimeBox } from "./_state_timing.ts";
import { type CommandLatency, measureCommandLatency } from "./_command_latency.ts";
import { latencyMarkdown, latencyVerdicts } from "./_latency_report.ts";
import { lifecycleSections, type Section } from "./lifecycle.ts";
import { sectionOf, spliceSection } from "./_scale_report.ts";
import {
  CHART_FILES,
  chartsMarkdown,
  latencyGroups,
  scalingPoints,
  writeCharts,
} from "./charts.ts";
import {
  cellKey,
  describeMachine,
  floorMarkdown,
  type FloorRow,
  fmtCount,
  fmtUs,
  formatVerdict,
  lookupPlans,
  type Machine,
  type Matrix,
  methodMarkdown,
  type PlannedStatement,
  type PlanSet,
  planTable,
  resultsTable,
  seedComparison,
  type StateRun,
  stateVerdicts,
  type Verdict,
} from "./_state_report.ts";

/** How the table script runs. */
export interface TableOptions {
  quick: boolean;
  /** Measure the command latency only (no state tables, no lifecycle); write nothing. */
  latencyOnly: boolean;
  /** Where to write the report; undefined means print only. */
  out?: string;
  sizes: number[];
  box: TimeBox;
  /** Rounds of each command and form in the command-latency comparison. */
  latencyRuns: number;
  /** Database sizes of the command-latency comparison. */
  latencySizes: number[];
}

const FULL_BOX: TimeBox = { boxMs: 800, rounds: 8, warmupMs: 50 };
const QUICK_BOX: TimeBox = { boxMs: 120, rounds: 3, warmupMs: 20 };
const DEFAULT_OUT = fileURLToPath(new URL("./RESULTS.md", import.meta.url));

/**
 * Parses `--quick`, `--latency-only`, `--out PATH` and `--help`; sizes come from
 * `$QVM_BENCH_SIZES` or the mode.
 */
export function parseTableArgs(argv: string[]): TableOptions | undefined {
  let quick = false;
  let latencyOnly = false;
  let rounds: number | undefined;
  let out: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    if (flag === "--help" || flag === "-h") return undefined;
    if (flag === "--quick") quick = true;
    else if (flag === "--latency-only") latencyOnly = true;
    else if (flag === "--out" && (inline ?? argv[i + 1]) !== undefined) {
      out = inline ?? argv[++i];
    } else if (flag === "--rounds" && (inline ?? argv[i + 1]) !== undefined) {
      rounds = Number(inline ?? argv[++i]);
      if (!Number.isInteger(rounds) || rounds < 1) {
        throw new Error(`--rounds takes a positive integer, not '${inline ?? argv[i]}'`);
      }
    } else {
      throw new Error(
        `unknown or incomplete option '${
          argv[i]
        }' (--quick, --latency-only, --rounds N, --out PATH)`,
      );
    }
  }
  if (latencyOnly && out !== undefined) throw new Error("--latency-only writes no report");
  const latencySizes = quick ? [100, 10_000] : [100, 10_000, 100_000];
  return {
    quick,
    latencyOnly,
    out: latencyOnly ? undefined : out ?? (quick ? undefined : DEFAULT_OUT),
    sizes: benchSizes(quick ? [10, 100, 1_000] : undefined),
    box: quick ? QUICK_BOX : FULL_BOX,
    latencyRuns: rounds ?? (quick ? 5 : 15),
    latencySizes: latencyOnly ? benchSizes(latencySizes) : latencySizes,
  };
}

/** `--latency-only`: the command-latency tables and their verdicts, printed. */
async function latencyOnly(options: TableOptions): Promise<number> {
  progress(
    `command latency: status, ls, info at ${options.latencySizes.map(fmtCount).join(", ")} VMs`,
  );
  const latency = await measureCommandLatency({
    sizes: options.latencySizes,
    runs: options.latencyRuns,
  });
  const verdicts = latencyVerdicts(latency);
  console.log(`\n${latencyMarkdown(latency)}\n\n${verdicts.map(formatVerdict).join("\n")}`);
  return 0;
}

function progress(message: string): void {
  console.error(`… ${message}`);
}

function measureSize(population: Population, box: TimeBox, matrix: Matrix): void {
  for (const operation of OPERATIONS) {
    progress(`${operation}, ${fmtCount(population.size)} VMs`);
    const fns = Object.fromEntries(
      VARIANTS.map((variant) => [variant, makeOperation(population, { operation, variant })]),
    ) as Record<Variant, () => void>;
    matrix.cells.set(cellKey(operation, population.size), measureInterleaved(fns, box));
  }
}

function planStatements(population: Population): Record<Variant, PlannedStatement[]> {
  const result = {} as Record<Variant, PlannedStatement[]>;
  for (const variant of VARIANTS) {
    result[variant] = Object.entries(variantStatements(variant)).flatMap(([kind, sqls]) =>
      sqls.map((sql) => ({ kind, sql: oneLine(sql), plan: queryPlan(population.store, sql) }))
    );
  }
  return result;
}

function oneLine(sql: string): string {
  return sql.replace(/\s+/g, " ").trim();
}

/**
 * What ours' get and update status are made of, on `population`: any statement call, a read
 * transaction, the primary-key search, the row object, the JSON parsing; an empty write
 * transaction, one UPDATE by id, and the id-miss-then-name UPDATE the table measures.
 */
function measureFloor(population: Population, box: TimeBox): FloorRow[] {
  const { store, ids, names, order } = population;
  const one = store.db.prepare("SELECT 1");
  const version = store.db.prepare("SELECT version FROM schema_version");
  const idOnly = store.db.prepare("SELECT id FROM vm_instances WHERE id = ?");
  const row = store.db.prepare(SQL.byId);
  const rowArray = store.db.prepare(SQL.byId);
  rowArray.setReturnArrays(true);
  let cursor = 0;
  const next = () => order[cursor++ % order.length];
  const flip = () => (cursor % 2 ? "running" : "stopped");
  const reads = measureInterleaved({
    "`SELECT 1`: a statement call that reads no table": () => one.get(),
    "`SELECT version FROM schema_version`: + a read transaction on the WAL database": () =>
      version.get(),
    "`SELECT id … WHERE id = ?`: + the primary-key search": () => idOnly.get(ids[next()]),
    "`SELECT * … WHERE id = ?`: + the whole row as an object": () => row.get(ids[next()]),
    "`SELECT * … WHERE id = ?` with the row as an array instead (what ours reads)": () =>
      rowArray.get(ids[next()]),
    "`StateStore.get(id)`: + the record from that array, both JSON columns parsed (ours)": () =>
      store.get(ids[next()]),
  }, box);
  store.db.exec("BEGIN");
  const inTxn = measureInterleaved({
    "`SELECT * … WHERE id = ?` inside one open read transaction (no per-call BEGIN)": () =>
      row.get(ids[next()]),
  }, box);
  store.db.exec("COMMIT");
  const writes = measureInterleaved({
    "`BEGIN IMMEDIATE` + `COMMIT` with nothing in between": () => store.transaction(() => 0),
    "`StateStore.updateStatus(id)`: one UPDATE, found by id": () =>
      store.updateStatus(ids[next()], flip()),
    "`StateStore.updateStatus(name)`: one UPDATE, found by name (ours in the table)": () =>
      store.updateStatus(names[next()], flip()),
  }, box);
  return [reads, inTxn, writes].flatMap((group) =>
    Object.entries(group).map(([label, m]) => ({ label, usPerOp: m.usPerOp }))
  );
}

function samePlans(a: Record<Variant, PlannedStatement[]>, b: Record<Variant, PlannedStatement[]>) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Measures every size in turn (one database open at a time) and the plans and floor on the largest. */
function measureState(options: TableOptions, machine: Machine): StateRun {
  const matrix: Matrix = { sizes: options.sizes, cells: new Map() };
  let plans: PlanSet | undefined;
  let floor: StateRun["floor"] = { size: 0, rows: [] };
  const largest = Math.max(...options.sizes);
  for (const size of options.sizes) {
    progress(`building a ${fmtCount(size)}-VM database`);
    const population = createPopulation(size);
    try {
      const variants = planStatements(population);
      const same = plans === undefined ||
        (plans.sameAtEverySize && samePlans(plans.variants, variants));
      if (size === largest || !plans) plans = { size, sameAtEverySize: same, variants };
      else plans.sameAtEverySize = same;
      measureSize(population, options.box, matrix);
      if (size === largest) {
        progress(`cost floor, ${fmtCount(size)} VMs`);
        floor = { size, rows: measureFloor(population, options.box) };
      }
    } finally {
      disposePopulation(population);
    }
  }
  return { machine, quick: options.quick, box: options.box, matrix, plans: plans!, floor };
}

function sqliteVersion(): string {
  const population = createPopulation(1);
  try {
    const row = population.store.db.prepare("SELECT sqlite_version() AS v").get() as { v: string };
    return row.v;
  } finally {
    disposePopulation(population);
  }
}

// ─────────────────────────────── EXTENSION POINT: lifecycle benchmarks ───────────────────────────────
/**
 * Further report sections, run after the state tables and `qvm status`, printed and written in
 * order. The lifecycle benchmarks plug in here: `qvm start` against a bare
 * `qemu-system-x86_64 -daemonize` of the same VM, and `qvm ls --json` with 10,000 VMs of which 10
 * run. A source returns one section's markdown (with its own `###` headings) and its verdicts,
 * e.g. `lifecycleSections` of `bench/lifecycle.ts`: add `lifecycleSections` to this list.
 */
export const EXTRA_SECTIONS: ((options: TableOptions) => Promise<Section>)[] = [
  () => lifecycleSections(),
];

async function extraSections(options: TableOptions): Promise<Section[]> {
  const sections: Section[] = [];
  for (const source of EXTRA_SECTIONS) sections.push(await source(options));
  return sections;
}
// ─────────────────────────────── end of extension point ───────────────────────────────

function header(run: StateRun, options: TableOptions): string {
  const m = run.machine;
  return [
    `# qvm state benchmarks, ${m.date.slice(0, 10)}`,
    "",
    `Generated by \`deno run -A bench/table.ts${options.quick ? " --quick" : ""}\` at ${m.date}; ` +
    "do not edit by hand, re-run the script.",
    "",
    "| machine | |",
    "| --- | --- |",
    `| CPU | ${m.cpu} |`,
    `| cores | ${m.cores} |`,
    `| Deno | ${m.deno} (V8 ${m.v8}) |`,
    `| SQLite | ${m.sqlite} (\`node:sqlite\`) |`,
  ].join("\n");
}

function report(parts: {
  run: StateRun;
  options: TableOptions;
  verdicts: Verdict[];
  latency: CommandLatency;
  extra: string[];
}): string {
  const { run, options, verdicts, latency, extra } = parts;
  const sections = [
    header(run, options),
    `## Method\n\n${methodMarkdown(run, { remove: REMOVE_METHOD, writeKey: WRITE_KEY_METHOD })}`,
    `## Results (µs per operation; ratios against ours)\n\n${resultsTable(run.matrix)}`,
    `## Charts\n\n${chartsMarkdown()}`,
    `## Query plans (EXPLAIN QUERY PLAN, ${fmtCount(run.plans.size)} VMs)\n\n` +
    `${lookupPlans(run.plans)}\n\nEvery statement each variant runs:\n\n${planTable(run.plans)}`,
    `## Where the time goes (ours)\n\n${floorMarkdown(run.floor)}`,
    `## Targets\n\n\`\`\`\n${verdicts.map(formatVerdict).join("\n")}\n\`\`\``,
    `## Command latency\n\n${latencyMarkdown(latency)}`,
    ...(extra.length ? [`## Lifecycle\n\n${extra.join("\n\n")}`] : []),
    `## How the seed's claims compare\n\n${seedComparison(run)}`,
  ];
  return `${sections.join("\n\n")}\n`;
}

function printState(run: StateRun, verdicts: Verdict[]): void {
  console.log(`\n${resultsTable(run.matrix)}\n`);
  console.log(`Query plans (${fmtCount(run.plans.size)} VMs):\n`);
  for (const variant of VARIANTS) {
    for (const s of run.plans.variants[variant].filter((p) => p.kind.startsWith("get"))) {
      console.log(`${variant}: ${s.sql}\n${s.plan.map((l) => `    ${l}`).join("\n")}`);
    }
  }
  console.log(`\nWhere the time goes (${fmtCount(run.floor.size)} VMs):`);
  for (const row of run.floor.rows) {
    console.log(`  ${fmtUs(row.usPerOp).padStart(8)} µs  ${row.label}`);
  }
  console.log("");
  for (const v of verdicts) console.log(formatVerdict(v));
}

/** Runs `deno fmt` on a written file, so `deno fmt --check` (the `check` task) stays clean. */
async function formatMarkdown(path: string): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", path],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    console.error(`deno fmt ${path} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

async function main(argv: string[]): Promise<number> {
  const options = parseTableArgs(argv);
  if (!options) {
    console.log(
      "Usage: deno run -A bench/table.ts [--quick] [--latency-only] [--rounds N] [--out PATH]  " +
        "(env QVM_BENCH_SIZES)",
    );
    return 0;
  }
  if (options.latencyOnly) return await latencyOnly(options);
  const machine = describeMachine(sqliteVersion());
  const run = measureState(options, machine);
  const verdicts = stateVerdicts(run.matrix);
  printState(run, verdicts);
  progress(
    `command latency: status, ls, info at ${options.latencySizes.map(fmtCount).join(", ")} VMs`,
  );
  const latency = await measureCommandLatency({
    sizes: options.latencySizes,
    runs: options.latencyRuns,
  });
  const latencyChecks = latencyVerdicts(latency);
  console.log(`\n${latencyMarkdown(latency)}\n\n${latencyChecks.map(formatVerdict).join("\n")}`);
  const extra = await extraSections(options);
  for (const section of extra) console.log(`\n${section.markdown}`);
  const markdown = report({
    run,
    options,
    verdicts: [...verdicts, ...latencyChecks, ...extra.flatMap((e) => e.verdicts)],
    latency,
    extra: extra.map((e) => e.markdown),
  });
  if (options.out) {
    const dir = options.out.includes("/")
      ? options.out.slice(0, options.out.lastIndexOf("/"))
      : ".";
    await writeCharts(dir, { scaling: scalingPoints(run.matrix), latency: latencyGroups(latency) });
    // The many-running-VMs section is bench/scale.ts's: kept as that script last wrote it.
    const kept = sectionOf(await Deno.readTextFile(options.out).catch(() => ""));
    await Deno.writeTextFile(options.out, kept ? spliceSection(markdown, kept) : markdown);
    const charts = [CHART_FILES.scaling, CHART_FILES.latency].map((f) => `${dir}/${f}`);
    for (const path of [options.out, ...charts]) {
      await formatMarkdown(path);
    }
    console.log(`\nwrote ${options.out}`);
  } else {
    console.log("\n(--quick: report not written; pass --out PATH to write it)");
  }
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
