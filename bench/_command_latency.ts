/**
 * Command latency: the wall time (and peak memory) of whole `qvm status`, `qvm ls --json` and
 * `qvm info` processes on databases of 100, 10,000 and 100,000 VMs, run from source, as the
 * installed single file (`src/dist/bundle.ts` + `src/dist/install.ts`) and as the standalone file
 * that carries its own Deno (`src/dist/standalone.ts`), side by side in one run with
 * `deno run` of an empty script (Deno's start-up floor) and the `sqlite3` CLI doing the same
 * lookup (the process floor without Deno). Runs rotate through the forms, so a noisy moment hurts
 * them all alike; medians are compared.
 */
import { buildDist } from "../src/dist/bundle.ts";
import { install } from "../src/dist/install.ts";
import { buildStandalone, defaultStandaloneOptions } from "../src/dist/standalone.ts";
import { createPopulation, disposePopulation, vmName } from "./_state_fixture.ts";
import { median } from "./_state_timing.ts";
import { SQL } from "../src/state/mod.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const TIME = "/usr/bin/time";
const PERF = ["/usr/bin/perf", "/usr/local/bin/perf"];

/** The commands measured, each with the `sqlite3` query that does the same lookup. */
export const LATENCY_COMMANDS = ["status", "ls --json", "info"] as const;

/** One of `LATENCY_COMMANDS`. */
export type LatencyCommand = typeof LATENCY_COMMANDS[number];

/** The ways of running a command that are compared. */
export const FORMS = [
  "source",
  "installed",
  "standalone",
  "node:sqlite script",
  "empty deno run",
  "sqlite3",
] as const;

/** One of `FORMS`. */
export type Form = typeof FORMS[number];

/** Medians over the runs of one form of one command at one size. */
export interface LatencyCell {
  ms: number;
  minMs: number;
  /** Peak resident memory (MB), when `/usr/bin/time` is there to measure it. */
  rssMb?: number;
  /**
   * CPU time of the process, all threads (`perf stat` task-clock), when perf works here: steadier
   * than wall time on a shared machine, since time spent waiting for a core does not count.
   */
  cpuMs?: number;
  runs: number;
  /**
   * The standalone form only: its wall time over the installed form's in the same round (the runs
   * alternate, so a pair shares the machine's load), median and quartiles over the rounds.
   */
  paired?: { median: number; low: number; high: number };
}

/** Everything the section reports. */
export interface CommandLatency {
  sizes: number[];
  runs: Record<number, number>;
  /** `cells[size][command][form]`. */
  cells: Record<number, Record<LatencyCommand, Partial<Record<Form, LatencyCell>>>>;
  /** Why a form or the whole section could not run. */
  notes: string[];
}

/** One run of a command: wall time, peak memory and CPU time (when measured), and its output. */
export interface Sample {
  ms: number;
  rssKb?: number;
  cpuMs?: number;
  code: number;
  stdout: string;
  stderr: string;
}

/** True if `path` is a file (a tool this machine has). */
export function hasTool(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

let perfWorks: string | null | undefined;

/** The perf binary, if `perf stat -e task-clock` works here (it needs perf_event access). */
async function perf(): Promise<string | null> {
  if (perfWorks !== undefined) return perfWorks;
  perfWorks = null;
  const path = PERF.find(hasTool);
  if (path) {
    const out = await new Deno.Command(path, {
      args: ["stat", "-x,", "-e", "task-clock", "true"],
      stdout: "null",
      stderr: "piped",
    }).output().catch(() => undefined);
    if (out?.success && /task-clock/.test(new TextDecoder().decode(out.stderr))) perfWorks = path;
  }
  return perfWorks;
}

/**
 * Runs `argv` three times: bare for its wall time (what the targets judge: a wrapper's own
 * start-up would pad both sides of every ratio), under `/usr/bin/time` for its peak memory and
 * under `perf stat` for its CPU time, each when that tool works here.
 */
export async function sample(
  argv: string[],
  env: Record<string, string>,
  cwd: string,
): Promise<Sample> {
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  const spawn = (full: string[]) =>
    new Deno.Command(full[0], {
      args: full.slice(1),
      cwd,
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  const start = performance.now();
  const out = await spawn(argv);
  const ms = performance.now() - start;
  let rssKb: number | undefined;
  if (hasTool(TIME)) {
    const rssFile = await Deno.makeTempFile({ prefix: "qvm-rss-" });
    await spawn([TIME, "-f", "%M", "-o", rssFile, ...argv]);
    const last = Number((await Deno.readTextFile(rssFile)).trim().split("\n").at(-1));
    await Deno.remove(rssFile);
    if (Number.isFinite(last)) rssKb = last;
  }
  let cpuMs: number | undefined;
  const perfPath = await perf();
  if (perfPath) {
    const cpuFile = await Deno.makeTempFile({ prefix: "qvm-cpu-" });
    await spawn([perfPath, "stat", "-x,", "-e", "task-clock", "-o", cpuFile, ...argv]);
    const line = (await Deno.readTextFile(cpuFile)).split("\n").find((l) =>
      l.includes("task-clock")
    );
    await Deno.remove(cpuFile);
    const value = Number(line?.split(",")[0]);
    if (Number.isFinite(value)) cpuMs = value;
  }
  return {
    ms,
    rssKb,
    cpuMs,
    code: out.code,
    stdout: decode(out.stdout),
    stderr: decode(out.stderr),
  };
}

/** `a[i].ms / b[i].ms` over the rounds: median and quartiles. */
function pairedRatio(a: Sample[], b: Sample[]): { median: number; low: number; high: number } {
  const ratios = a.map((s, i) => s.ms / b[i].ms).sort((x, y) => x - y);
  const at = (q: number) => ratios[Math.min(ratios.length - 1, Math.floor(q * ratios.length))];
  return { median: median(ratios), low: at(0.25), high: at(0.75) };
}

function sqlFor(command: LatencyCommand, vm: string): string {
  switch (command) {
    case "status":
      return `SELECT id, name, status, pid, stop_reason FROM vm_instances WHERE id = '${vm}' ` +
        `UNION ALL SELECT id, name, status, pid, stop_reason FROM vm_instances WHERE name = '${vm}'`;
    case "ls --json":
      return "SELECT id, name, status, pid FROM vm_instances ORDER BY name";
    case "info":
      return `SELECT * FROM vm_instances WHERE id = '${vm}' ` +
        `UNION ALL SELECT * FROM vm_instances WHERE name = '${vm}'`;
  }
}

/**
 * A Deno script that does only the command's SQLite part through `node:sqlite`, with qvm's own
 * query for `ls --json` (\`SQL.allJson\`, its bytes written as they are): what a qvm without any
 * checks, options or output formatting would cost, the floor for Deno plus SQLite.
 */
function scriptSource(): string {
  return `import { DatabaseSync } from "node:sqlite";
const [path, command, vm] = Deno.args;
const db = new DatabaseSync(path);
if (command === "ls") {
  const statement = db.prepare(${JSON.stringify(SQL.allJson)});
  statement.setReturnArrays(true);
  Deno.stdout.writeSync(statement.get()[0]);
} else {
  const by = /^[0-9a-f]{8}-/.test(vm) ? "id" : "name";
  const row = db.prepare(\`SELECT * FROM vm_instances WHERE \${by} = ?\`).get(vm);
  console.log(command === "status" ? \`\${row.name}: \${row.status}\` : JSON.stringify(row));
}
db.close();
`;
}

function qvmArgs(command: LatencyCommand, vm: string): string[] {
  return command === "ls --json" ? ["ls", "--json"] : [command, vm];
}

/** What a successful run of `command` must print, so a failing form cannot look fast. */
function looksRight(command: LatencyCommand, vm: string, s: Sample): boolean {
  if (s.code !== 0) return false;
  return command === "ls --json" ? s.stdout.trimStart().startsWith("[") : s.stdout.includes(vm);
}

/**
 * Measures every command × form at every size; `runs` alternating runs per form (fewer at
 * 100,000 VMs, whose database takes longest to build). Builds and installs `dist/qvm` into a temp
 * prefix first, and builds the standalone file beside it (its runtime compressed with xz -1: a warm
 * run never reads it, and a runtime compressed before is reused).
 */
export async function measureCommandLatency(
  options: { sizes: number[]; runs: number },
): Promise<CommandLatency> {
  const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "qvm-bench-cmd-" });
  const result: CommandLatency = { sizes: options.sizes, runs: {}, cells: {}, notes: [] };
  try {
    const cache = `${root}/cache`;
    // Every form runs from a folder of no project, as a user's shell would (no deno.json there).
    const work = `${root}/work`;
    await Deno.mkdir(work);
    const empty = `${root}/empty.ts`;
    await Deno.writeTextFile(empty, "");
    const script = `${root}/sqlite_script.js`;
    await Deno.writeTextFile(script, scriptSource());
    await buildDist(`${root}/dist/qvm`);
    const installed = await install({
      prefix: `${root}/prefix`,
      from: `${root}/dist/qvm`,
      deno: Deno.execPath(),
    });
    const standalone = `${root}/dist/qvm-standalone`;
    await buildStandalone({
      ...defaultStandaloneOptions(),
      out: standalone,
      from: `${root}/dist/qvm`,
      level: 1,
    });
    const sqlite3 = ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3"].find(hasTool);
    if (!sqlite3) result.notes.push("no sqlite3 CLI on this machine: its column is empty");
    for (const size of options.sizes) {
      const dataDir = `${root}/data-${size}`;
      await Deno.mkdir(dataDir, { mode: 0o700 });
      disposePopulation(createPopulation(size, { dataDir }));
      const vm = vmName(Math.floor(size / 2));
      const runs = size >= 100_000 ? Math.max(3, Math.ceil(options.runs / 2)) : options.runs;
      result.runs[size] = runs;
      const flags = ["--data-dir", dataDir, "--runtime-dir", `${root}/run`];
      const env = { XDG_CACHE_HOME: cache };
      result.cells[size] = {} as CommandLatency["cells"][number];
      for (const command of LATENCY_COMMANDS) {
        const argv: Partial<Record<Form, string[]>> = {
          source: [
            Deno.execPath(),
            "run",
            "-A",
            "--quiet",
            MAIN,
            ...flags,
            ...qvmArgs(command, vm),
          ],
          installed: [installed, ...flags, ...qvmArgs(command, vm)],
          standalone: [standalone, ...flags, ...qvmArgs(command, vm)],
          "node:sqlite script": [
            Deno.execPath(),
            "run",
            "-A",
            "--quiet",
            script,
            `${dataDir}/qvm.db`,
            command.split(" ")[0],
            vm,
          ],
          "empty deno run": [Deno.execPath(), "run", "-A", "--quiet", empty],
        };
        if (sqlite3) argv.sqlite3 = [sqlite3, "-json", `${dataDir}/qvm.db`, sqlFor(command, vm)];
        const forms = FORMS.filter((f) => argv[f]);
        for (const form of forms) { // warm-up (and the standalone form's one-time unpack)
          const s = await sample(argv[form]!, env, work);
          if (form !== "empty deno run" && form !== "sqlite3" && !looksRight(command, vm, s)) {
            throw new Error(`${form} qvm ${command} failed: ${s.stderr || s.stdout}`);
          }
        }
        const samples = Object.fromEntries(forms.map((f) => [f, [] as Sample[]]));
        for (let i = 0; i < runs; i++) {
          for (let j = 0; j < forms.length; j++) {
            const form = forms[(i + j) % forms.length];
            samples[form].push(await sample(argv[form]!, env, work));
          }
        }
        const cells: Partial<Record<Form, LatencyCell>> = {};
        for (const form of forms) {
          const list = samples[form];
          const rss = list.flatMap((s) => (s.rssKb === undefined ? [] : [s.rssKb / 1024]));
          const cpu = list.flatMap((s) => (s.cpuMs === undefined ? [] : [s.cpuMs]));
          cells[form] = {
            ms: median(list.map((s) => s.ms)),
            minMs: Math.min(...list.map((s) => s.ms)),
            rssMb: rss.length ? median(rss) : undefined,
            cpuMs: cpu.length ? median(cpu) : undefined,
            runs: list.length,
          };
        }
        if (cells.standalone && samples.installed) {
          cells.standalone.paired = pairedRatio(samples.standalone, samples.installed);
        }
        result.cells[size][command] = cells;
      }
      await Deno.remove(dataDir, { recursive: true });
    }
    return result;
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}
