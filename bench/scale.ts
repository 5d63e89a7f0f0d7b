/**
 * `deno task bench:scale [--quick] [--out PATH]`: qvm with many running VMs, side by side with an
 * empty `deno run` in the same run. Starts real `-machine none` QEMUs through the installed qvm,
 * and at 10, 100 and 500 running VMs times whole `qvm ls --json`, `qvm ls` and `qvm status VM`
 * processes (interleaved rounds, medians, peak memory, CPU time); times `start` of 100 VMs with
 * one command, `stop --all` and `rm --all --force` of all 500; and `qvm status` and `ls --json`
 * at 10,000 stopped VMs. Writes its own section of bench/RESULTS.md (bench/table.ts keeps it) and
 * bench/scale.svg, the chart of those times against running VMs.
 *
 * Every QEMU it starts runs under its temp data and runtime dirs and is stopped (then, failing
 * that, killed by the pid files in that runtime dir) before it exits, Ctrl-C included. Before
 * starting 500 VMs it checks that the memory available holds them, and measures fewer otherwise,
 * saying so in the report.
 *
 * `--quick`: 10 and 40 running VMs, 5 rounds, 1,000 stopped VMs; writes only with `--out`.
 */
import { fileURLToPath } from "node:url";
import { buildDist } from "../src/dist/bundle.ts";
import { install } from "../src/dist/install.ts";
import { databasePath, StateStore } from "../src/state/mod.ts";
import { hasTool, type Sample, sample } from "./_command_latency.ts";
import { createPopulation, disposePopulation, vmName } from "./_state_fixture.ts";
import { median } from "./_state_timing.ts";
import { CHART_FILES, linesSvg } from "./charts.ts";
import { formatVerdict } from "./_state_report.ts";
import {
  type BulkRun,
  type Cell,
  FLOOR_FORMS,
  FLOOR_VMS,
  type FloorForm,
  SCALE_FORMS,
  type ScaleForm,
  scaleMarkdown,
  type ScaleRun,
  scaleVerdicts,
  spliceSection,
  TARGET_RUNNING,
  TARGET_START,
} from "./_scale_report.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const DEFAULT_OUT = fileURLToPath(new URL("./RESULTS.md", import.meta.url));
/** A `-machine none` QEMU with 16 MiB of guest memory: ~21 MiB resident here, rounded up. */
const PER_VM_MB = 24;
/** Memory left for everything else while the most VMs run. */
const RESERVE_MB = 2048;

/** How the scale benchmark runs. */
export interface ScaleOptions {
  quick: boolean;
  out?: string;
  sizes: number[];
  rounds: number;
  floorVms: number;
}

/** Parses `--quick`, `--out PATH` and `--help`. */
export function parseScaleArgs(argv: string[]): ScaleOptions | undefined {
  let quick = false;
  let out: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    if (flag === "--help" || flag === "-h") return undefined;
    if (flag === "--quick") quick = true;
    else if (flag === "--out" && (inline ?? argv[i + 1]) !== undefined) out = inline ?? argv[++i];
    else throw new Error(`unknown or incomplete option '${argv[i]}' (--quick, --out PATH)`);
  }
  return {
    quick,
    out: out ?? (quick ? undefined : DEFAULT_OUT),
    sizes: quick ? [10, 40] : [10, 100, TARGET_RUNNING],
    rounds: quick ? 5 : 15,
    floorVms: quick ? 1_000 : FLOOR_VMS,
  };
}

function progress(message: string): void {
  console.error(`… ${message}`);
}

function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(", ");
  } catch {
    return "unknown";
  }
}

function load1(): number {
  return Number(loadAverage().split(",")[0]) || 0;
}

function memAvailableMb(): number {
  try {
    const line = Deno.readTextFileSync("/proc/meminfo").split("\n").find((l) =>
      l.startsWith("MemAvailable:")
    );
    return Number(line?.match(/(\d+)/)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

function cpuModel(): string {
  try {
    const line = Deno.readTextFileSync("/proc/cpuinfo").split("\n").find((l) =>
      l.startsWith("model name")
    );
    return line ? line.slice(line.indexOf(":") + 1).trim() : "unknown";
  } catch {
    return "unknown";
  }
}

/** The temp folders, the installed qvm and how to run it. */
class Lab {
  readonly root: string;
  readonly dataDir: string;
  readonly runtimeDir: string;
  readonly work: string;
  readonly env: Record<string, string>;
  installed = "";
  empty = "";

  constructor(root: string) {
    this.root = root;
    this.dataDir = `${root}/data`;
    this.runtimeDir = `${root}/run`;
    this.work = `${root}/work`;
    this.env = { XDG_CACHE_HOME: `${root}/cache` };
  }

  flags(dataDir = this.dataDir): string[] {
    return ["--data-dir", dataDir, "--runtime-dir", this.runtimeDir];
  }

  /** The installed qvm's argv for `args`. */
  qvm(args: string[], dataDir?: string): string[] {
    return [this.installed, ...this.flags(dataDir), ...args];
  }

  /** Runs the installed qvm once; throws with its stderr when it fails. */
  async run(args: string[]): Promise<string> {
    const out = await new Deno.Command(this.installed, {
      args: [...this.flags(), ...args],
      cwd: this.work,
      env: { NO_COLOR: "1", ...this.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    if (!out.success) {
      throw new Error(`qvm ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
    }
    return text;
  }

  /** How many of the VMs `ls --json` shows running. */
  async running(): Promise<number> {
    const listed = JSON.parse(await this.run(["ls", "--json"])) as { status: string }[];
    return listed.filter((vm) => vm.status === "running").length;
  }

  /**
   * Runs one command on many VMs under `/usr/bin/time` (its start-up is nothing against seconds):
   * wall time around it, its peak memory, its exit code.
   */
  async bulk(label: string, args: string[], vms: number): Promise<BulkRun> {
    const load = load1();
    const rssFile = `${this.root}/rss`;
    const argv = hasTool("/usr/bin/time")
      ? ["/usr/bin/time", "-f", "%M", "-o", rssFile, ...this.qvm(args)]
      : this.qvm(args);
    const started = performance.now();
    const out = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: this.work,
      env: { NO_COLOR: "1", ...this.env },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    const ms = performance.now() - started;
    let rssMb: number | undefined;
    try {
      rssMb = Number(Deno.readTextFileSync(rssFile).trim().split("\n").at(-1)) / 1024;
    } catch { /* no /usr/bin/time */ }
    if (!out.success) {
      console.error(new TextDecoder().decode(out.stderr).split("\n").slice(0, 5).join("\n"));
    }
    const shown = args.length > 6 ? [...args.slice(0, 3), "…", ...args.slice(-2)] : args;
    const run: BulkRun = {
      label,
      command: `qvm ${shown.join(" ")}`,
      vms,
      ms,
      rssMb: Number.isFinite(rssMb) ? rssMb : undefined,
      code: out.code,
      load,
    };
    progress(`${label}, ${vms} VMs: ${(ms / 1000).toFixed(2)} s, exit ${out.code}`);
    return run;
  }

  /** Stops every VM, then kills any QEMU of this runtime dir still there (by its pid file). */
  async cleanUp(): Promise<void> {
    if (this.installed) {
      await new Deno.Command(this.installed, {
        args: [...this.flags(), "stop", "--all", "--force"],
        cwd: this.work,
        env: this.env,
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output().catch(() => {});
    }
    let entries: Deno.DirEntry[] = [];
    try {
      entries = [...Deno.readDirSync(this.runtimeDir)];
    } catch { /* never made */ }
    for (const entry of entries) {
      if (!entry.name.endsWith(".pid")) continue;
      try {
        const pid = Number(Deno.readTextFileSync(`${this.runtimeDir}/${entry.name}`).trim());
        // Only a process started with this very runtime dir in its command line.
        const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
        if (cmdline.includes(`${this.runtimeDir}/`)) Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
}

/** Medians of a form's samples. */
function cellOf(samples: Sample[]): Cell {
  const rss = samples.flatMap((s) => (s.rssKb === undefined ? [] : [s.rssKb / 1024]));
  const cpu = samples.flatMap((s) => (s.cpuMs === undefined ? [] : [s.cpuMs]));
  return {
    ms: median(samples.map((s) => s.ms)),
    minMs: Math.min(...samples.map((s) => s.ms)),
    rssMb: rss.length ? median(rss) : undefined,
    cpuMs: cpu.length ? median(cpu) : undefined,
  };
}

/**
 * Times every form of `argv` in `rounds` rounds, each form once per round in rotating order, after
 * one warm-up run each; a form whose run fails (or prints what `check` refuses) stops the bench.
 */
async function paired<F extends string>(
  lab: Lab,
  argv: Record<F, string[]>,
  options: { rounds: number; check: (form: F, s: Sample) => boolean },
): Promise<Record<F, Cell>> {
  const forms = Object.keys(argv) as F[];
  for (const form of forms) {
    const s = await sample(argv[form], lab.env, lab.work);
    if (!options.check(form, s)) throw new Error(`${form} failed: ${s.stderr || s.stdout}`);
  }
  const samples = Object.fromEntries(forms.map((f) => [f, [] as Sample[]])) as Record<F, Sample[]>;
  for (let i = 0; i < options.rounds; i++) {
    for (let j = 0; j < forms.length; j++) {
      const form = forms[(i + j) % forms.length];
      samples[form].push(await sample(argv[form], lab.env, lab.work));
    }
  }
  return Object.fromEntries(forms.map((f) => [f, cellOf(samples[f])])) as Record<F, Cell>;
}

function names(from: number, to: number): string[] {
  return Array.from({ length: to - from }, (_, i) => vmName(from + i));
}

/** Defines `count` VMs with no guest: one through `qvm add`, the rest as copies of its config. */
async function defineVms(lab: Lab, count: number): Promise<void> {
  const config = `${lab.root}/none.yaml`;
  Deno.writeTextFileSync(
    config,
    "memory: 16M\narguments:\n  - machine: none\n  - accel: tcg\n  - nodefaults\n",
  );
  await lab.run(["add", config, "--name", vmName(0)]);
  const store = StateStore.open(databasePath(lab.dataDir));
  try {
    const template = store.require(vmName(0)).config;
    for (const name of names(1, count)) store.insert({ name, config: { ...template, name } });
  } finally {
    store.close();
  }
}

/** Measures the forms at `n` running VMs. */
function measureRunning(
  lab: Lab,
  n: number,
  rounds: number,
): Promise<Record<ScaleForm, Cell>> {
  const vm = vmName(Math.floor(n / 2));
  const argv: Record<ScaleForm, string[]> = {
    "empty deno run": [Deno.execPath(), "run", "-A", "--quiet", lab.empty],
    "ls --json": lab.qvm(["ls", "--json"]),
    "ls": lab.qvm(["ls"]),
    "status VM": lab.qvm(["status", vm]),
    "ls --json (source)": [
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      MAIN,
      ...lab.flags(),
      "ls",
      "--json",
    ],
  };
  for (const form of SCALE_FORMS) if (!(form in argv)) throw new Error(`no argv for ${form}`);
  return paired(lab, argv, {
    rounds,
    check: (form, s) => {
      if (form === "empty deno run") return s.code === 0;
      if (s.code !== 0) return false;
      if (form === "status VM") return s.stdout.startsWith(`${vm}: running`);
      const running = form === "ls"
        ? s.stdout.split("\n").filter((l) => / running /.test(l)).length
        : (JSON.parse(s.stdout) as { status: string }[]).filter((v) => v.status === "running")
          .length;
      return running === n;
    },
  });
}

/** Measures status and ls --json on `count` stopped VMs. */
async function measureFloor(lab: Lab, count: number, rounds: number): Promise<ScaleRun["floor"]> {
  const dataDir = `${lab.root}/floor`;
  Deno.mkdirSync(dataDir, { mode: 0o700 });
  disposePopulation(createPopulation(count, { dataDir }));
  const vm = vmName(Math.floor(count / 2));
  const source = (args: string[]) => [
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    MAIN,
    ...lab.flags(dataDir),
    ...args,
  ];
  const argv: Record<FloorForm, string[]> = {
    "empty deno run": [Deno.execPath(), "run", "-A", "--quiet", lab.empty],
    "status VM": lab.qvm(["status", vm], dataDir),
    "ls --json": lab.qvm(["ls", "--json"], dataDir),
    "status VM (source)": source(["status", vm]),
    "ls --json (source)": source(["ls", "--json"]),
  };
  for (const form of FLOOR_FORMS) if (!(form in argv)) throw new Error(`no argv for ${form}`);
  const load = load1();
  const cells = await paired(lab, argv, {
    rounds,
    check: (form, s) =>
      s.code === 0 &&
      (form === "empty deno run" ||
        (form.startsWith("status")
          ? s.stdout.startsWith(`${vm}: `)
          : (JSON.parse(s.stdout) as unknown[]).length === count)),
  });
  return { vms: count, rounds, load, cells };
}

/** Brings the number of running VMs to `n`: starts or stops the difference, with one command. */
async function runExactly(lab: Lab, n: number, now: number): Promise<BulkRun | undefined> {
  if (n === now) return undefined;
  if (n > now) {
    return await lab.bulk("start with one command", ["start", ...names(now, n)], n - now);
  }
  return await lab.bulk("stop by name", ["stop", ...names(n, now)], now - n);
}

async function measure(options: ScaleOptions, lab: Lab): Promise<ScaleRun> {
  const availableMb = memAvailableMb();
  const fits = Math.floor((availableMb - RESERVE_MB) / PER_VM_MB);
  const sizes = options.sizes.filter((n) => n <= fits);
  const skipped = options.sizes.filter((n) => n > fits);
  const note = skipped.length
    ? `${skipped.join(", ")} running VMs not measured: they need ~${
      Math.max(...skipped) * PER_VM_MB + RESERVE_MB
    } MiB, ${Math.round(availableMb)} MiB available`
    : undefined;
  if (note) progress(note);
  const run: ScaleRun = {
    date: new Date().toISOString(),
    quick: options.quick,
    cores: navigator.hardwareConcurrency,
    cpu: cpuModel(),
    deno: Deno.version.deno,
    rounds: options.rounds,
    cells: {},
    loads: {},
    sizes,
    bulk: [],
    memory: { availableMb, perVmMb: PER_VM_MB, note },
    loadStart: loadAverage(),
    loadEnd: "",
  };
  // The stopped-VMs floor first: after the running phase, hundreds of QEMUs just stopped still
  // load the machine (their memory being freed) while `status` and `ls --json` are timed.
  progress(`status and ls --json at ${options.floorVms} stopped VMs`);
  run.floor = await measureFloor(lab, options.floorVms, options.rounds);
  const most = Math.max(0, ...sizes);
  if (most === 0) return { ...run, loadEnd: loadAverage() };
  progress(`defining ${most} VMs`);
  await defineVms(lab, most);
  const first = Math.min(TARGET_START, most);
  progress(`start of ${first} VMs with one command`);
  run.bulk.push(await lab.bulk("start with one command", ["start", ...names(0, first)], first));
  let now = first;
  for (const n of sizes) {
    const step = await runExactly(lab, n, now);
    if (step) run.bulk.push(step);
    now = n;
    const seen = await lab.running();
    if (seen !== n) throw new Error(`expected ${n} running VMs, ls shows ${seen}`);
    progress(`ls, ls --json and status at ${n} running VMs (load ${loadAverage()})`);
    run.loads[n] = load1();
    run.cells[n] = await measureRunning(lab, n, options.rounds);
  }
  run.bulk.push(await lab.bulk("stop --all", ["stop", "--all"], now));
  const left = await lab.running();
  if (left !== 0) throw new Error(`stop --all left ${left} VMs running`);
  run.bulk.push(await lab.bulk("rm --all --force", ["rm", "--all", "--force", "--yes"], most));
  const remaining = JSON.parse(await lab.run(["ls", "--json"])) as unknown[];
  if (remaining.length !== 0) throw new Error(`rm --all left ${remaining.length} VMs`);
  run.loadEnd = loadAverage();
  return run;
}

/** The chart: median wall time against running VMs, a line per form. */
function chart(run: ScaleRun): string {
  const forms: ScaleForm[] = ["ls --json", "ls", "status VM", "empty deno run"];
  return linesSvg(
    forms.map((form) => ({
      label: form === "empty deno run" ? "empty deno run (Deno's floor)" : `qvm ${form}`,
      points: run.sizes.flatMap((n) => {
        const cell = run.cells[n]?.[form];
        return cell ? [{ x: n, y: Math.round(cell.ms * 10) / 10 }] : [];
      }),
    })),
    {
      title: "qvm ls and status against running VMs (installed, median wall time)",
      x: "running VMs",
      y: "ms (whole process)",
    },
  );
}

async function main(argv: string[]): Promise<number> {
  const options = parseScaleArgs(argv);
  if (!options) {
    console.log("Usage: deno run -A bench/scale.ts [--quick] [--out PATH]");
    return 0;
  }
  const lab = new Lab(await Deno.makeTempDir({ dir: "/tmp", prefix: "qvm-bench-scale-" }));
  const interrupted = () => {
    progress("interrupted: stopping the VMs started");
    lab.cleanUp().finally(() => {
      Deno.removeSync(lab.root, { recursive: true });
      Deno.exit(130);
    });
  };
  Deno.addSignalListener("SIGINT", interrupted);
  try {
    for (const dir of [lab.work, lab.dataDir]) Deno.mkdirSync(dir, { mode: 0o700 });
    lab.empty = `${lab.root}/empty.ts`;
    Deno.writeTextFileSync(lab.empty, "");
    progress("building and installing qvm");
    await buildDist(`${lab.root}/dist/qvm`);
    lab.installed = await install({
      prefix: `${lab.root}/prefix`,
      from: `${lab.root}/dist/qvm`,
      deno: Deno.execPath(),
    });
    const run = await measure(options, lab);
    const svg = chart(run);
    const markdown = scaleMarkdown(
      run,
      `![qvm ls and status against running VMs: median wall time](${CHART_FILES.scale})`,
    );
    console.log(`\n${markdown}\n`);
    for (const v of scaleVerdicts(run)) console.error(formatVerdict(v));
    if (options.out) {
      const dir = options.out.includes("/")
        ? options.out.slice(0, options.out.lastIndexOf("/"))
        : ".";
      let report = "";
      try {
        report = Deno.readTextFileSync(options.out);
      } catch { /* a new report */ }
      Deno.writeTextFileSync(`${dir}/${CHART_FILES.scale}`, svg);
      Deno.writeTextFileSync(options.out, spliceSection(report, markdown));
      for (const path of [options.out, `${dir}/${CHART_FILES.scale}`]) {
        await new Deno.Command(Deno.execPath(), {
          args: ["fmt", "--quiet", path],
          stdout: "null",
          stderr: "null",
        }).output();
      }
      console.error(`wrote ${options.out} and ${dir}/${CHART_FILES.scale}`);
    }
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", interrupted);
    await lab.cleanUp();
    await Deno.remove(lab.root, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
