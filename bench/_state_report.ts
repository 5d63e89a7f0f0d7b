/**
 * Turns measured numbers into markdown and verdicts: the results table, the query plans, the
 * targets, the end-to-end comparison and the comparison with the seed's claims. Every sentence
 * that states a number or a plan property is computed here from the measurements.
 */
import { type Operation, OPERATIONS, type Variant, VARIANTS } from "./_state_fixture.ts";
import type { Measurement, TimeBox } from "./_state_timing.ts";

/** Every measured cell: `cells.get(cellKey(operation, size))` holds the three variants. */
export interface Matrix {
  sizes: number[];
  cells: Map<string, Record<Variant, Measurement>>;
}

/** One statement a variant runs, with its `EXPLAIN QUERY PLAN` lines. */
export interface PlannedStatement {
  kind: string;
  sql: string;
  plan: string[];
}

/** The plans of every variant's statements, taken on the largest database. */
export interface PlanSet {
  size: number;
  /** Whether every size gave the same plans. */
  sameAtEverySize: boolean;
  variants: Record<Variant, PlannedStatement[]>;
}

/** One row of the "where the time goes" breakdown. */
export interface FloorRow {
  label: string;
  usPerOp: number;
}

/** The machine and software the numbers came from. */
export interface Machine {
  date: string;
  cpu: string;
  cores: number;
  deno: string;
  v8: string;
  sqlite: string;
}

/** One target's outcome. */
export interface Verdict {
  status: "PASS" | "FAIL" | "SKIP";
  target: string;
  detail: string;
}

/** Everything the state part of the report is made of. */
export interface StateRun {
  machine: Machine;
  quick: boolean;
  box: TimeBox;
  matrix: Matrix;
  plans: PlanSet;
  floor: { size: number; rows: FloorRow[] };
}

/** The map key of one cell. */
export function cellKey(operation: Operation, size: number): string {
  return `${operation}@${size}`;
}

function cellOf(matrix: Matrix, operation: Operation, size: number) {
  return matrix.cells.get(cellKey(operation, size));
}

function us(cell: Record<Variant, Measurement>, variant: Variant): number {
  return cell[variant].usPerOp;
}

function ratio(cell: Record<Variant, Measurement>, variant: Variant): number {
  return cell[variant].usPerOp / cell.ours.usPerOp;
}

/** A µs figure with sensible precision: `1.23`, `45.6`, `1,234`. */
export function fmtUs(value: number): string {
  if (value < 10) return value.toFixed(2);
  if (value < 100) return value.toFixed(1);
  return Math.round(value).toLocaleString("en-US");
}

/** A ratio: `1.05x`, `12.3x`, `1,234x`. */
export function fmtRatio(value: number): string {
  if (value < 10) return `${value.toFixed(2)}x`;
  if (value < 100) return `${value.toFixed(1)}x`;
  return `${Math.round(value).toLocaleString("en-US")}x`;
}

/** `100000` as `100,000`. */
export function fmtCount(value: number): string {
  return value.toLocaleString("en-US");
}

/** Reads the CPU model from /proc/cpuinfo ("unknown" elsewhere) and the runtime versions. */
export function describeMachine(sqlite: string): Machine {
  let cpu = "unknown";
  try {
    const line = Deno.readTextFileSync("/proc/cpuinfo").split("\n").find((l) =>
      l.startsWith("model name")
    );
    if (line) cpu = line.slice(line.indexOf(":") + 1).trim();
  } catch { /* not Linux */ }
  return {
    date: new Date().toISOString(),
    cpu,
    cores: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    sqlite,
  };
}

/** The results table: rows operation × size, columns µs/op per variant and the two ratios. */
export function resultsTable(matrix: Matrix): string {
  const lines = [
    "| operation | VMs | ours µs/op | or µs/op | scan µs/op | or/ours | scan/ours |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const operation of OPERATIONS) {
    for (const size of matrix.sizes) {
      const cell = cellOf(matrix, operation, size);
      if (!cell) continue;
      const values = VARIANTS.map((v) => fmtUs(us(cell, v)));
      const ratios = [fmtRatio(ratio(cell, "or")), fmtRatio(ratio(cell, "scan"))];
      lines.push(`| ${operation} | ${fmtCount(size)} | ${[...values, ...ratios].join(" | ")} |`);
    }
  }
  return lines.join("\n");
}

/** The lookup (SELECT) plan of each variant, as indented trees. */
export function lookupPlans(plans: PlanSet): string {
  const blocks = VARIANTS.map((variant) => {
    const lookups = plans.variants[variant].filter((s) => s.kind.startsWith("get"));
    const body = lookups.map((s) => `${s.sql}\n${s.plan.map((l) => `  ${l}`).join("\n")}`);
    return `**${variant}**\n\n\`\`\`\n${body.join("\n")}\n\`\`\``;
  });
  return blocks.join("\n\n");
}

/** Every statement kind × variant, each plan flattened to one line. */
export function planTable(plans: PlanSet): string {
  const kinds = plans.variants.ours.map((s) => s.kind).filter((k, i, a) => a.indexOf(k) === i);
  const lines = ["| statement | ours | or | scan |", "| --- | --- | --- | --- |"];
  for (const kind of kinds) {
    const cells = VARIANTS.map((variant) =>
      plans.variants[variant].filter((s) => s.kind === kind)
        .map((s) => s.plan.map((l) => l.trim()).join(" → ")).join("; then ")
    );
    lines.push(`| ${kind} | ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

/** What the plans say, read from their text: does a variant scan, search, or OR two indexes? */
export function planFacts(plans: PlanSet, variant: Variant) {
  const statements = plans.variants[variant];
  const lines = statements.flatMap((s) => s.plan.map((l) => l.trim()));
  const getLines = statements.filter((s) => s.kind.startsWith("get"))
    .flatMap((s) => s.plan.map((l) => l.trim()));
  return {
    scans: lines.some((l) => /^SCAN\b/.test(l)),
    everyStatementMultiIndexOr: statements.every((s) =>
      s.plan.some((l) => l.includes("MULTI-INDEX OR"))
    ),
    getSearches: getLines.filter((l) => /^SEARCH\b/.test(l)),
    getScans: getLines.some((l) => /^SCAN\b/.test(l)),
  };
}

function verdict(target: string, options: { pass?: boolean; detail: string }): Verdict {
  const status = options.pass === undefined ? "SKIP" : options.pass ? "PASS" : "FAIL";
  return { status, target, detail: options.detail };
}

const BIG = 100_000;
const GET_LIMIT_US = 8;
/** Growth from 100 to 100,000 VMs: ≤ 1.5x for the lookups, ≤ 2x for the writes. */
const GET_GROWTH_LIMIT = 1.5;
const GROWTH_LIMIT = 2;
const SCAN_RATIO_MIN = 1_000;
const STATUS_LIMIT_US = 40;

function getTargets(matrix: Matrix): Verdict[] {
  return (["get by id", "get by name"] as const).map((operation) => {
    const target = `${operation} ≤ ${GET_LIMIT_US} µs/op at ${fmtCount(BIG)} VMs (ours)`;
    const cell = cellOf(matrix, operation, BIG);
    if (!cell) return verdict(target, { detail: `${fmtCount(BIG)} VMs not measured` });
    const value = us(cell, "ours");
    return verdict(target, { pass: value <= GET_LIMIT_US, detail: `${fmtUs(value)} µs/op` });
  });
}

function growthTargets(matrix: Matrix): Verdict[] {
  return OPERATIONS.map((operation) => {
    const limit = operation.startsWith("get") ? GET_GROWTH_LIMIT : GROWTH_LIMIT;
    const target = `${operation}: growth from 100 to ${fmtCount(BIG)} VMs ≤ ${limit}x (ours)`;
    const small = cellOf(matrix, operation, 100);
    const big = cellOf(matrix, operation, BIG);
    if (!small || !big) return verdict(target, { detail: "100 or 100,000 VMs not measured" });
    const growth = us(big, "ours") / us(small, "ours");
    const detail = `${fmtUs(us(small, "ours"))} → ${fmtUs(us(big, "ours"))} µs/op: ${
      fmtRatio(growth)
    }`;
    return verdict(target, { pass: growth <= limit, detail });
  });
}

function scanTargets(matrix: Matrix): Verdict[] {
  return OPERATIONS.map((operation) => {
    const target = `${operation}: scan/ours ≥ ${fmtCount(SCAN_RATIO_MIN)}x at ${fmtCount(BIG)} VMs`;
    const cell = cellOf(matrix, operation, BIG);
    if (!cell) return verdict(target, { detail: `${fmtCount(BIG)} VMs not measured` });
    const value = ratio(cell, "scan");
    const detail = `${fmtUs(us(cell, "scan"))} / ${fmtUs(us(cell, "ours"))} µs: ${fmtRatio(value)}`;
    return verdict(target, { pass: value >= SCAN_RATIO_MIN, detail });
  });
}

function statusTarget(matrix: Matrix): Verdict {
  const target = `update status ≤ ${STATUS_LIMIT_US} µs/op at ${fmtCount(BIG)} VMs (ours; WAL, ` +
    "synchronous=NORMAL)";
  const cell = cellOf(matrix, "update status", BIG);
  if (!cell) return verdict(target, { detail: `${fmtCount(BIG)} VMs not measured` });
  const value = us(cell, "ours");
  return verdict(target, { pass: value <= STATUS_LIMIT_US, detail: `${fmtUs(value)} µs/op` });
}

/** The state targets, checked against the measured matrix (SKIP where a size was not run). */
export function stateVerdicts(matrix: Matrix): Verdict[] {
  return [
    ...getTargets(matrix),
    ...growthTargets(matrix),
    ...scanTargets(matrix),
    statusTarget(matrix),
  ];
}

/** One verdict as a line: `PASS  target: detail`. */
export function formatVerdict(v: Verdict): string {
  return `${v.status.padEnd(4)}  ${v.target}: ${v.detail}`;
}

/** The "where the time goes" table. */
export function floorMarkdown(floor: StateRun["floor"]): string {
  const lines = [
    `Measured on the ${fmtCount(floor.size)}-VM database, same timing loop, random VMs; each ` +
    "read row adds one step to the row above it (the array row replaces the object row's last " +
    "step, and `get` builds on it); the write rows start again from an empty transaction. The " +
    "one-transaction row shows what the per-call read transaction costs.",
    "",
    "| what one call does | µs/call |",
    "| --- | ---: |",
    ...floor.rows.map((r) => `| ${r.label} | ${fmtUs(r.usPerOp)} |`),
  ];
  return lines.join("\n");
}

/** The method notes: sizes, timing loop, targets, remove and write keys. */
export function methodMarkdown(run: StateRun, notes: { remove: string; writeKey: string }) {
  const { box } = run;
  return [
    `- Sizes: ${run.matrix.sizes.map(fmtCount).join(", ")} VMs${run.quick ? " (--quick)" : ""}; ` +
    "each a real SQLite file in a temp dir, created with `StateStore.open` (our pragmas: WAL, " +
    "synchronous=NORMAL, busy_timeout, foreign_keys; our schema), filled in one transaction of " +
    "prepared INSERTs (random UUID ids, names `vm-000123`, a one-disk config), WAL checkpointed.",
    "- Variants: **ours** = the `StateStore` methods (two prepared, reused statements, primary key " +
    "and unique name index, a UUID-shaped argument tried by id first, any other by name first); **or** = the same steps with `WHERE id = ? OR name = ?`; **scan** " +
    "= the same steps with `WHERE ? IN (id, name)`. Each prepared once; same transactions and row " +
    "parsing in all three.",
    `- Targets: a seeded random permutation of all N VMs, cycled; every variant visits the same VMs ` +
    `in the same order. Every call checks that it found its VM. ${capitalise(notes.writeKey)}.`,
    `- Remove: ${notes.remove}.`,
    `- Timing: per cell, ${box.warmupMs} ms warm-up per variant, then ${box.rounds} interleaved ` +
    `rounds of ${(box.boxMs / box.rounds).toFixed(0)} ms per variant (variant order rotating), ` +
    "calls batched to ~1 ms between clock reads; µs/op = the median round's total time / calls " +
    "(so WAL checkpoints are averaged in). Slow cells (scan at large N) simply get fewer calls.",
  ].join("\n");
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The seed's results table (100 VMs; its "before" column is estimated, not measured). */
const SEED_RESULTS: readonly {
  operation: Operation;
  seed: string;
  beforeMs: number;
  afterMs: number;
  speedup: number;
}[] = [
  { operation: "get by id", seed: "get_vm by ID", beforeMs: 100, afterMs: 0.46, speedup: 216 },
  { operation: "get by name", seed: "get_vm by name", beforeMs: 100, afterMs: 0.48, speedup: 208 },
  {
    operation: "update status",
    seed: "update_vm_status",
    beforeMs: 100,
    afterMs: 0.47,
    speedup: 213,
  },
  {
    operation: "update config",
    seed: "update_vm_config",
    beforeMs: 100,
    afterMs: 0.36,
    speedup: 278,
  },
  { operation: "remove", seed: "remove_vm", beforeMs: 100, afterMs: 0.40, speedup: 250 },
];

/** The seed's scalability table (all of it "~", none of it measured). */
const SEED_SCALABILITY: readonly {
  vms: number;
  linearMs: number;
  logMs: number;
  speedup: number;
}[] = [
  { vms: 10, linearMs: 10, logMs: 0.3, speedup: 33 },
  { vms: 100, linearMs: 100, logMs: 0.5, speedup: 200 },
  { vms: 1_000, linearMs: 1_000, logMs: 0.7, speedup: 1_429 },
  { vms: 10_000, linearMs: 10_000, logMs: 0.9, speedup: 11_111 },
];

function planParagraph(run: StateRun): string {
  const or = planFacts(run.plans, "or");
  const scan = planFacts(run.plans, "scan");
  const sqlite = `SQLite ${run.machine.sqlite}`;
  const stable = run.plans.sameAtEverySize ? " (the same at every size measured)" : "";
  const head = "The seed says `WHERE id = ? OR name = ?` stops SQLite from using an index, so " +
    "every lookup is a full scan (`SCAN TABLE vm_instances`, O(n)).";
  const scanNote = scan.scans
    ? "The forced-scan form `? IN (id, name)` does plan as a `SCAN`, so the scan column is a real " +
      "full scan."
    : "Note: the `? IN (id, name)` form did not plan as a SCAN here either.";
  if (or.scans) {
    return `**On ${sqlite} the OR form does scan**, as the seed says. ${head} ${scanNote}`;
  }
  const searches = or.getSearches.map((l) => `\`${l}\``).join(" and ");
  const writes = or.everyStatementMultiIndexOr
    ? "; the UPDATE and DELETE statements plan the same way"
    : "";
  return `**On ${sqlite} that premise is false.** ${head} Here \`EXPLAIN QUERY PLAN\`${stable} ` +
    `shows no SCAN for any OR-form statement: the lookup is ` +
    `${or.everyStatementMultiIndexOr ? "a `MULTI-INDEX OR` of " : ""}${or.getSearches.length} ` +
    `index SEARCHes (${searches})${writes}. The OR form is an indexed lookup. ${scanNote}`;
}

function resultsComparison(matrix: Matrix): string {
  const rows = SEED_RESULTS.flatMap((seed) => {
    const cell = cellOf(matrix, seed.operation, 100);
    if (!cell) return [];
    const vals = [
      `~${seed.beforeMs} ms (estimated)`,
      `${seed.afterMs} ms`,
      `~${seed.speedup}x`,
      `${fmtUs(us(cell, "or"))} µs`,
      `${fmtUs(us(cell, "ours"))} µs`,
      fmtRatio(ratio(cell, "or")),
      `${fmtUs(us(cell, "scan"))} µs`,
      fmtRatio(ratio(cell, "scan")),
      fmtRatio((seed.beforeMs * 1000) / us(cell, "scan")),
    ];
    return [`| ${seed.seed} / ${seed.operation} | ${vals.join(" | ")} |`];
  });
  if (rows.length === 0) {
    return "The 100-VM size was not measured, so the results table is not compared.";
  }
  const get = cellOf(matrix, "get by id", 100)!;
  const lead = `At 100 VMs the seed claims ~216x for get by id against an estimated ~100 ms ` +
    `baseline. Here the OR form (the seed's real "before") costs ${fmtUs(us(get, "or"))} µs and ` +
    `ours ${fmtUs(us(get, "ours"))} µs: ${fmtRatio(ratio(get, "or"))}. Even a real full scan of ` +
    `the 100 rows costs ${fmtUs(us(get, "scan"))} µs (${fmtRatio(ratio(get, "scan"))} ours), so ` +
    `the seed's estimated baseline is ${fmtRatio(100_000 / us(get, "scan"))} what scanning 100 ` +
    "rows actually costs on this machine.";
  return [
    lead,
    "",
    "| seed / our operation | seed before | seed after | seed speed-up | or | ours | or/ours | scan | scan/ours | seed before / scan |",
    "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows,
  ].join("\n");
}

function scalabilityComparison(matrix: Matrix): string {
  const rows = SEED_SCALABILITY.flatMap((seed) => {
    const cell = cellOf(matrix, "get by id", seed.vms);
    if (!cell) {
      return [
        `| ${fmtCount(seed.vms)} | ~${fmtCount(seed.linearMs)} ms | ~${seed.logMs} ms | ~${
          fmtCount(seed.speedup)
        }x | not measured | | | | |`,
      ];
    }
    const vals = [
      `${fmtUs(us(cell, "scan"))} µs`,
      `${fmtUs(us(cell, "ours"))} µs`,
      fmtRatio(ratio(cell, "scan")),
      `${fmtUs(us(cell, "or"))} µs`,
      fmtRatio(ratio(cell, "or")),
    ];
    const seedVals = [
      `~${fmtCount(seed.linearMs)} ms`,
      `~${seed.logMs} ms`,
      `~${fmtCount(seed.speedup)}x`,
    ];
    return [`| ${fmtCount(seed.vms)} | ${[...seedVals, ...vals].join(" | ")} |`];
  });
  return [
    'The seed\'s scalability table (every figure "~", none measured) against get by id here:',
    "",
    "| VMs | seed O(n) | seed O(log n) | seed speed-up | scan | ours | scan/ours | or | or/ours |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows,
    "",
    scalabilityReading(matrix),
  ].join("\n");
}

function scalabilityReading(matrix: Matrix): string {
  const measured = SEED_SCALABILITY.map((s) => s.vms).filter((n) => cellOf(matrix, "get by id", n));
  if (measured.length < 2) return "Too few of the seed's sizes were measured to compare growth.";
  const lo = cellOf(matrix, "get by id", measured[0])!;
  const hi = cellOf(matrix, "get by id", measured[measured.length - 1])!;
  const n = measured[measured.length - 1];
  const perRowNs = ((us(hi, "scan") - us(hi, "ours")) * 1000) / n;
  const first = SEED_SCALABILITY[0];
  const last = SEED_SCALABILITY[SEED_SCALABILITY.length - 1];
  const seedGrowth = last.logMs / first.logMs;
  return `The seed's O(n) column assumes ~1 ms per VM; the forced scan here costs about ` +
    `${perRowNs.toFixed(0)} ns per VM (at ${fmtCount(n)} VMs), ` +
    `${fmtRatio(1_000_000 / perRowNs)} less. Its O(log n) column grows ${fmtRatio(seedGrowth)} ` +
    `from ${fmtCount(first.vms)} to ${fmtCount(last.vms)} VMs; ` +
    `ours grows ${fmtRatio(us(hi, "ours") / us(lo, "ours"))} from ${fmtCount(measured[0])} to ` +
    `${fmtCount(n)} VMs (${fmtUs(us(lo, "ours"))} → ${fmtUs(us(hi, "ours"))} µs).`;
}

function conclusion(run: StateRun): string {
  const { matrix } = run;
  const orRatios = [...matrix.cells.values()].map((c) => ratio(c, "or"));
  const lo = Math.min(...orRatios);
  const hi = Math.max(...orRatios);
  const get100 = cellOf(matrix, "get by id", 100);
  const get10k = cellOf(matrix, "get by id", 10_000);
  const scanPart = get100 && get10k
    ? ` With a form that really scans we measure scan/ours ${fmtRatio(ratio(get100, "scan"))} ` +
      `at 100 VMs and ${fmtRatio(ratio(get10k, "scan"))} at 10,000 for get by id (the seed ` +
      "claims ~200x and ~11,111x)."
    : "";
  const orScans = planFacts(run.plans, "or").scans;
  const why = orScans
    ? "On this SQLite the OR form does scan, so the scan column is the comparison the seed meant."
    : "The seed's speed-ups describe an index lookup against a full scan, which its OR form is " +
      "not on this SQLite.";
  const overhead = get100
    ? ` At 100 VMs even a real full scan costs only ${fmtRatio(ratio(get100, "scan"))} ours: ` +
      "the per-call work (statement call, read transaction, row object, JSON parsing; see " +
      '"Where the time goes") outweighs finding the row, even by scanning all 100.'
    : "";
  return `**In sum:** what the seed's change (the OR form → two lookups) is worth here is the ` +
    `or/ours column: ${fmtRatio(lo)} to ${fmtRatio(hi)} over every operation and size measured ` +
    `(below 1x means the OR form was faster), not ~216x. ${why}${scanPart}${overhead}`;
}

/** The generated "How the seed's claims compare" section body. */
export function seedComparison(run: StateRun): string {
  return [
    planParagraph(run),
    "",
    resultsComparison(run.matrix),
    "",
    scalabilityComparison(run.matrix),
    "",
    conclusion(run),
  ].join("\n");
}
