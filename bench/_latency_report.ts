/**
 * The "command latency" section: tables of whole-process wall time per command, form and size,
 * and the start-up targets as verdicts. Every number in the text is computed from the runs.
 */
import {
  type CommandLatency,
  type Form,
  FORMS,
  LATENCY_COMMANDS,
  type LatencyCell,
  type LatencyCommand,
} from "./_command_latency.ts";
import { fmtCount, fmtRatio, type Verdict } from "./_state_report.ts";

/** The size the targets are judged at. */
export const TARGET_VMS = 10_000;
const STATUS_LIMIT = 1.25;
const STATUS_RSS_LIMIT = 1.3;
const LS_LIMIT = 1.35;
/** The standalone file against the installed form: its launcher may add next to nothing. */
const STANDALONE_LIMIT = 1.05;

function verdict(target: string, pass: boolean | undefined, detail: string): Verdict {
  return { status: pass === undefined ? "SKIP" : pass ? "PASS" : "FAIL", target, detail };
}

/** `; CPU time 1.40x` when both were measured. */
function cpuNote(a: LatencyCell, b: LatencyCell): string {
  if (a.cpuMs === undefined || b.cpuMs === undefined) return "";
  return `; CPU time ${a.cpuMs.toFixed(1)} vs ${b.cpuMs.toFixed(1)} ms: ${
    fmtRatio(a.cpuMs / b.cpuMs)
  }`;
}

function cell(lat: CommandLatency, size: number, command: LatencyCommand, form: Form) {
  return lat.cells[size]?.[command]?.[form];
}

/**
 * The start-up targets: status and ls against an empty `deno run`, installed against source, and
 * standalone against installed (at the target size, or at each size measured when it was not).
 */
export function latencyVerdicts(lat: CommandLatency): Verdict[] {
  const size = TARGET_VMS;
  const at = `at ${fmtCount(size)} VMs`;
  const floor = (command: LatencyCommand) => cell(lat, size, command, "empty deno run");
  const out: Verdict[] = [];
  const ratioTarget = (command: LatencyCommand, limit: number, form: "source" | "installed") => {
    const target = `qvm ${command} ${at} ≤ ${limit}x an empty deno run (${form}, median wall time)`;
    const qvm = cell(lat, size, command, form);
    const base = floor(command);
    if (!qvm || !base) return verdict(target, undefined, "not measured");
    const r = qvm.ms / base.ms;
    return verdict(
      target,
      r <= limit,
      `${qvm.ms.toFixed(1)} vs ${base.ms.toFixed(1)} ms: ${fmtRatio(r)}${cpuNote(qvm, base)}`,
    );
  };
  const memoryTarget = (form: "source" | "installed") => {
    const target =
      `qvm status ${at}: peak memory ≤ ${STATUS_RSS_LIMIT}x an empty deno run's (${form})`;
    const qvm = cell(lat, size, "status", form);
    const base = floor("status");
    if (qvm?.rssMb === undefined || base?.rssMb === undefined) {
      return verdict(target, undefined, "not measured (no /usr/bin/time)");
    }
    const r = qvm.rssMb / base.rssMb;
    return verdict(
      target,
      r <= STATUS_RSS_LIMIT,
      `${qvm.rssMb.toFixed(1)} vs ${base.rssMb.toFixed(1)} MB: ${fmtRatio(r)}`,
    );
  };
  for (const form of ["installed", "source"] as const) {
    out.push(ratioTarget("status", STATUS_LIMIT, form));
    out.push(memoryTarget(form));
    out.push(ratioTarget("ls --json", LS_LIMIT, form));
  }
  for (const command of LATENCY_COMMANDS) {
    const target =
      `installed qvm ${command} ${at} no slower than from source (median ratio ≤ 1.00x)`;
    const src = cell(lat, size, command, "source");
    const inst = cell(lat, size, command, "installed");
    if (!src || !inst) {
      out.push(verdict(target, undefined, "not measured"));
      continue;
    }
    const r = inst.ms / src.ms;
    out.push(verdict(
      target,
      r <= 1,
      `${inst.ms.toFixed(1)} vs ${src.ms.toFixed(1)} ms: ${fmtRatio(r)}${cpuNote(inst, src)}`,
    ));
  }
  const sizes = lat.sizes.includes(size) ? [size] : lat.sizes;
  for (const at of sizes) {
    for (const command of LATENCY_COMMANDS) {
      const target = `standalone qvm ${command} at ${fmtCount(at)} VMs ≤ ${STANDALONE_LIMIT}x ` +
        `installed (median wall time, paired by round)`;
      const inst = cell(lat, at, command, "installed");
      const alone = cell(lat, at, command, "standalone");
      if (!inst || !alone) {
        out.push(verdict(target, undefined, "not measured"));
        continue;
      }
      // Judged on the rounds' paired ratios when there are, else on the ratio of the medians.
      const r = alone.ms / inst.ms;
      const p = alone.paired;
      const pairs = p
        ? `; paired per round ${fmtRatio(p.median)} (quartiles ${fmtRatio(p.low)} to ` +
          `${fmtRatio(p.high)})`
        : "";
      out.push(verdict(
        target,
        (p?.median ?? r) <= STANDALONE_LIMIT,
        `${alone.ms.toFixed(1)} vs ${inst.ms.toFixed(1)} ms: ${fmtRatio(r)}${pairs}` +
          cpuNote(alone, inst),
      ));
    }
  }
  return out;
}

/** The section body: method, one table per size, the sqlite3 ratios. */
export function latencyMarkdown(lat: CommandLatency): string {
  const lines = [
    "Whole processes, spawn included, on databases built like the tables' ones (`--data-dir` " +
    "of that size, the VM asked about is the middle one, none running). Forms: **source** = " +
    "`deno run -A --quiet main.ts …`; **installed** = `dist/qvm` built by `src/dist/bundle.ts` and " +
    "installed by `src/dist/install.ts`, run as an executable; **standalone** = `dist/qvm-standalone` " +
    "built by `src/dist/standalone.ts` (Deno and the modules in one file, unpacked by its first " +
    "run into a cache folder), run as an executable; **empty deno run** = `deno run -A " +
    "--quiet EMPTY.ts`, Deno's start-up floor; **node:sqlite script** = a Deno script that " +
    "only opens the database with `node:sqlite` and runs the same lookup (for `ls --json`, qvm's " +
    "own JSON query, bytes written as they are): Deno plus SQLite with nothing of qvm; **sqlite3** = the `sqlite3` CLI doing the same " +
    "lookup (`-json`), the process floor without Deno. Every form runs from an empty folder (no " +
    "deno.json), as from a user's shell. Each round runs every form once, in rotating order, " +
    "after one warm-up run each; medians of the rounds. Wall time is taken from bare runs; peak " +
    "memory from a second run under `/usr/bin/time`, CPU time (all threads) from a third under " +
    "`perf stat -e task-clock` (steadier than wall time here), so no wrapper's start-up pads " +
    "the wall times. The machine is shared (2 cores): compare within a row, not across runs. " +
    "Targets are judged on wall time; their lines give the CPU-time ratio too.",
    "",
  ];
  for (const size of lat.sizes) {
    lines.push(
      `**${fmtCount(size)} VMs** (${lat.runs[size]} rounds)`,
      "",
      "| command | source ms | installed ms | standalone ms | node:sqlite script ms | empty deno run ms | sqlite3 ms | source / empty | installed / empty | script / empty | installed / source | standalone / installed | CPU ms source / installed / standalone / script / empty | MB source / installed / standalone / script / empty |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const command of LATENCY_COMMANDS) {
      const c = Object.fromEntries(FORMS.map((f) => [f, cell(lat, size, command, f)]));
      const ms = (f: Form) => (c[f] ? c[f]!.ms.toFixed(1) : "–");
      const ratio = (a: Form, b: Form) => (c[a] && c[b] ? fmtRatio(c[a]!.ms / c[b]!.ms) : "–");
      const mb = (f: Form) => (c[f]?.rssMb !== undefined ? c[f]!.rssMb!.toFixed(1) : "–");
      const cpu = (f: Form) => (c[f]?.cpuMs !== undefined ? c[f]!.cpuMs!.toFixed(1) : "–");
      const script = "node:sqlite script";
      const empty = "empty deno run";
      lines.push(
        `| \`qvm ${command}\` | ${ms("source")} | ${ms("installed")} | ${ms("standalone")} | ` +
          `${ms(script)} | ${ms(empty)} | ${ms("sqlite3")} | ${ratio("source", empty)} | ` +
          `${ratio("installed", empty)} | ${ratio(script, empty)} | ` +
          `${ratio("installed", "source")} | ${ratio("standalone", "installed")} | ` +
          `${cpu("source")} / ${cpu("installed")} / ${cpu("standalone")} / ${cpu(script)} / ` +
          `${cpu(empty)} | ${mb("source")} / ${mb("installed")} / ${mb("standalone")} / ` +
          `${mb(script)} / ${mb(empty)} |`,
      );
    }
    lines.push("");
  }
  if (lat.notes.length) lines.push(...lat.notes.map((n) => `Note: ${n}.`), "");
  return lines.join("\n").trimEnd();
}
