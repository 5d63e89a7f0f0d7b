/**
 * End to end: the wall time of `qvm status vm-005000` on a 10,000-VM database against the wall
 * time of `deno run` on an empty script, alternating in the same run, so the ratio is qvm's own
 * cost over Deno's start-up floor.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { createPopulation, disposePopulation, vmName } from "./_state_fixture.ts";
import { median } from "./_state_timing.ts";

/** Wall times (ms) of one command over the runs. */
export interface WallTimes {
  command: string;
  samples: number[];
  median: number;
  min: number;
}

/** What the end-to-end comparison found; `skipped` says why it could not run. */
export interface StatusE2e {
  vms: number;
  runs: number;
  /** The VM asked about, `vm-005000` for 10,000 VMs. */
  vm: string;
  skipped?: string;
  qvm?: WallTimes;
  empty?: WallTimes;
}

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

interface RunResult {
  ms: number;
  code: number;
  stdout: string;
  stderr: string;
}

async function timeRun(args: string[], cwd: string): Promise<RunResult> {
  const command = new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const start = performance.now();
  const out = await command.output();
  const ms = performance.now() - start;
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes).trim();
  return { ms, code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

function wallTimes(command: string, samples: number[]): WallTimes {
  return { command, samples, median: median(samples), min: Math.min(...samples) };
}

/** Why a check run of `qvm status` does not count as working, or undefined when it does. */
function failure(result: RunResult, vm: string): string | undefined {
  if (result.code !== 0) {
    return `\`qvm status ${vm}\` exited ${result.code}: ${result.stderr || result.stdout}`;
  }
  if (!result.stdout.includes(vm)) {
    return `\`qvm status ${vm}\` printed no line for ${vm}: '${result.stdout}'`;
  }
  return undefined;
}

/**
 * Builds a `vms`-VM database in a temp data dir (the benchmarks' population method), checks that
 * `qvm status` works on it (else returns `skipped` with the reason), warms both commands up once,
 * then times `runs` alternating runs of each.
 */
export async function measureStatusE2e(options: { vms: number; runs: number }): Promise<StatusE2e> {
  const { vms, runs } = options;
  const vm = vmName(Math.floor(vms / 2));
  const dir = await Deno.makeTempDir({ prefix: "qvm-bench-e2e-" });
  const result: StatusE2e = { vms, runs, vm };
  try {
    const dataDir = join(dir, "data");
    await Deno.mkdir(dataDir, { mode: 0o700 });
    disposePopulation(createPopulation(vms, { dataDir }));
    const empty = join(dir, "empty.ts");
    await Deno.writeTextFile(empty, "");
    const qvmArgs = ["run", "-A", "--quiet", MAIN, "--data-dir", dataDir];
    qvmArgs.push("--runtime-dir", join(dir, "run"), "status", vm);
    const emptyArgs = ["run", "-A", "--quiet", empty];
    result.skipped = failure(await timeRun(qvmArgs, dir), vm);
    if (result.skipped) return result;
    await timeRun(emptyArgs, dir);
    const qvm: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < runs; i++) {
      const first = i % 2 ? emptyArgs : qvmArgs;
      const second = i % 2 ? qvmArgs : emptyArgs;
      const a = await timeRun(first, dir);
      const b = await timeRun(second, dir);
      (first === qvmArgs ? qvm : bare).push(a.ms);
      (second === qvmArgs ? qvm : bare).push(b.ms);
      const broken = failure(first === qvmArgs ? a : b, vm);
      if (broken) return { ...result, skipped: `run ${i + 1}: ${broken}` };
    }
    result.qvm = wallTimes(`deno run -A --quiet main.ts --data-dir DIR status ${vm}`, qvm);
    result.empty = wallTimes("deno run -A --quiet EMPTY.ts", bare);
    return result;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
