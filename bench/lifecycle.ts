/**
 * Lifecycle benchmarks, measured side by side in one run with the real test guest under TCG:
 * `qvm start` against a bare `qemu-system-x86_64 -daemonize` of the same command line (both until
 * QMP answers), and `qvm ls --json` over 10,000 VMs of which 10 are running. Prints markdown.
 */
import { join } from "node:path";
import { StateStore } from "../src/state/mod.ts";
import { QmpClient } from "../src/qemu/qmp.ts";
import { ensureGuest, GUEST_READY_MARKER } from "../tests/fixture/mod.ts";
import type { Verdict } from "./_state_report.ts";
import { buildDist } from "../src/dist/bundle.ts";
import { install } from "../src/dist/install.ts";

/** A report section: its markdown and the targets it judged. */
export interface Section {
  markdown: string;
  verdicts: Verdict[];
}

const START_OVERHEAD_LIMIT_MS = 50;
const LS_RUNNING_LIMIT = 2;

function judged(target: string, pass: boolean, detail: string): Verdict {
  return { status: pass ? "PASS" : "FAIL", target, detail };
}

const MAIN = new URL("../main.ts", import.meta.url).pathname;

interface Timing {
  median: number;
  min: number;
}

function stats(samples: number[]): Timing {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)], min: sorted[0] };
}

async function qvm(env: Record<string, string>, args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`qvm ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

async function guestYaml(dir: string, name: string): Promise<string> {
  const guest = await ensureGuest();
  const path = join(dir, `${name}.yaml`);
  await Deno.writeTextFile(
    path,
    [
      `name: ${name}`,
      "memory: 128M",
      "arguments:",
      "  - accel: tcg",
      `  - kernel: ${guest.kernel}`,
      `  - initrd: ${guest.initrdAcpi}`,
      `  - append: "${guest.append}"`,
      "",
    ].join("\n"),
  );
  return path;
}

function killPidFile(path: string): void {
  try {
    Deno.kill(Number(Deno.readTextFileSync(path).trim()), "SIGKILL");
  } catch { /* gone */ }
}

async function bareStart(argv: string[], qmpSocket: string): Promise<number> {
  const started = performance.now();
  const out = await new Deno.Command(argv[0], { args: argv.slice(1), stderr: "piped" }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  const client = await QmpClient.connect(qmpSocket, { timeoutMs: 10_000 });
  const elapsed = performance.now() - started;
  client.close();
  await client.closed;
  return elapsed;
}

/** `qvm start` vs bare QEMU of the same argv, alternating, `rounds` times each. */
export async function startOverhead(rounds = 7): Promise<Section> {
  const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "qvmb-" });
  const env = { QVM_DATA_DIR: join(root, "d"), QVM_RUNTIME_DIR: join(root, "r") };
  try {
    await qvm(env, ["add", await guestYaml(root, "b1")]);
    const dry = JSON.parse(await qvm(env, ["start", "b1", "--dry-run", "--json"]));
    const inspect = JSON.parse(await qvm(env, ["inspect", "b1"]));
    // The bare run uses the same argv with its own pid file and sockets, in a sibling folder.
    const bareDir = join(root, "bare");
    await Deno.mkdir(bareDir);
    await Deno.mkdir(join(bareDir, "logs"));
    const rewrite = (a: string) =>
      a.replaceAll(env.QVM_RUNTIME_DIR, bareDir).replaceAll(env.QVM_DATA_DIR, bareDir);
    const bareArgv = (dry.argv as string[]).map(rewrite);
    const bareQmp = rewrite(inspect.process.qmp_socket);
    const bare: number[] = [];
    const ours: number[] = [];
    const empty: number[] = [];
    const emptyScript = join(root, "empty.ts");
    await Deno.writeTextFile(emptyScript, "");
    for (let i = 0; i < rounds; i++) {
      bare.push(await bareStart(bareArgv, bareQmp));
      killPidFile(rewrite(inspect.process.pid_file));
      let t = performance.now();
      await qvm(env, ["start", "b1", "--wait-for", "qmp"]);
      ours.push(performance.now() - t);
      await qvm(env, ["stop", "b1", "--force"]);
      t = performance.now();
      await new Deno.Command(Deno.execPath(), { args: ["run", "-A", "--quiet", emptyScript] })
        .output();
      empty.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 200));
    }
    const b = stats(bare), o = stats(ours), e = stats(empty);
    const overhead = o.median - b.median;
    const verdicts = [
      judged(
        `qvm start overhead over bare qemu -daemonize until QMP answers ≤ ${START_OVERHEAD_LIMIT_MS} ms`,
        overhead <= START_OVERHEAD_LIMIT_MS,
        `${o.median.toFixed(0)} - ${b.median.toFixed(0)} ms = ${
          overhead.toFixed(0)
        } ms (medians; ` +
          `Deno's own start-up ${e.median.toFixed(0)} ms of it)`,
      ),
    ];
    const markdown = [
      "### `qvm start` vs bare `qemu-system-x86_64 -daemonize` (until QMP answers)",
      "",
      `${rounds} alternating rounds each; the test guest under TCG; same command line.`,
      "",
      "| run | median ms | min ms |",
      "| --- | ---: | ---: |",
      `| bare QEMU -daemonize + QMP greeting | ${b.median.toFixed(0)} | ${b.min.toFixed(0)} |`,
      `| qvm start --wait-for qmp | ${o.median.toFixed(0)} | ${o.min.toFixed(0)} |`,
      `| deno run of an empty script (process start-up floor) | ${e.median.toFixed(0)} | ${
        e.min.toFixed(0)
      } |`,
      "",
      `qvm's overhead: ${overhead.toFixed(0)} ms (median), of which Deno's own start-up is ` +
      `${e.median.toFixed(0)} ms; without it, ${(overhead - e.median).toFixed(0)} ms.`,
    ].join("\n");
    return { markdown, verdicts };
  } finally {
    await qvm(env, ["stop", "b1", "--force"]).catch(() => {});
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

/** `qvm ls --json` over 10,000 defined VMs of which `live` are running real guests. */
export async function lsWithRunning(
  options = { total: 10_000, live: 10, rounds: 9 },
): Promise<Section> {
  const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "qvmb-" });
  const env = { QVM_DATA_DIR: join(root, "d"), QVM_RUNTIME_DIR: join(root, "r") };
  const names: string[] = [];
  try {
    for (let i = 0; i < options.live; i++) {
      names.push(`live-${i}`);
      await qvm(env, ["add", await guestYaml(root, `live-${i}`)]);
    }
    const store = StateStore.open(join(env.QVM_DATA_DIR, "qvm.db"));
    const insert = store.db.prepare(
      `INSERT INTO vm_instances (id, name, config_data, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?)`,
    );
    const config = JSON.stringify({ memory: "1G", cpu: 2, arguments: [], args: [], storage: [] });
    store.transaction(() => {
      for (let i = options.live; i < options.total; i++) {
        const now = new Date().toISOString();
        insert.run(crypto.randomUUID(), `vm-${String(i).padStart(6, "0")}`, config, now, now);
      }
    });
    store.close();
    // Idle guests (booted to their shell), as a host running ten VMs usually has.
    for (const n of names) {
      await qvm(env, [
        "start",
        n,
        "--wait-for",
        `serial:${GUEST_READY_MARKER}`,
        "--timeout",
        "120",
      ]);
    }
    await buildDist(join(root, "dist", "qvm"));
    const installed = await install({
      prefix: join(root, "prefix"),
      from: join(root, "dist", "qvm"),
      deno: Deno.execPath(),
    });
    const emptyScript = join(root, "empty.ts");
    await Deno.writeTextFile(emptyScript, "");
    const work = join(root, "work"); // no deno.json here, as in a user's shell
    await Deno.mkdir(work);
    const forms: Record<string, string[]> = {
      source: [Deno.execPath(), "run", "-A", "--quiet", MAIN, "ls", "--json"],
      installed: [installed, "ls", "--json"],
      "empty deno run": [Deno.execPath(), "run", "-A", "--quiet", emptyScript],
    };
    const formNames = Object.keys(forms);
    const samples: Record<string, number[]> = Object.fromEntries(formNames.map((f) => [f, []]));
    const seen: Record<string, number> = {};
    for (let i = -1; i < options.rounds; i++) { // round -1 warms up
      for (let j = 0; j < formNames.length; j++) {
        const form = formNames[(i + 1 + j) % formNames.length];
        const t = performance.now();
        const out = await new Deno.Command(forms[form][0], {
          args: forms[form].slice(1),
          cwd: work,
          env,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const ms = performance.now() - t;
        if (form !== "empty deno run") {
          if (!out.success) throw new Error(`${form} qvm ls --json failed`);
          seen[form] = JSON.parse(new TextDecoder().decode(out.stdout))
            .filter((v: { status: string }) => v.status === "running").length;
        }
        if (i >= 0) samples[form].push(ms);
      }
    }
    const e = stats(samples["empty deno run"]);
    const at = `with ${options.total.toLocaleString("en")} VMs, ${options.live} running`;
    const verdicts = (["installed", "source"] as const).map((form) => {
      const s = stats(samples[form]);
      const ratio = s.median / e.median;
      return judged(
        `qvm ls --json ${at} ≤ ${LS_RUNNING_LIMIT}x an empty deno run (${form})`,
        ratio <= LS_RUNNING_LIMIT && seen[form] === options.live,
        `${s.median.toFixed(1)} vs ${e.median.toFixed(1)} ms (medians): ${ratio.toFixed(2)}x` +
          (seen[form] === options.live ? "" : `; saw ${seen[form]} running, not ${options.live}`),
      );
    });
    const markdown = [
      `### \`qvm ls --json\` ${at}`,
      "",
      "The running guests have booted and sit idle at their shell; each is asked `query-status`. " +
      "Bare runs from an empty folder, forms in rotating order, one warm-up round.",
      "",
      `| form | runs | median ms | min ms | running VMs seen | ratio to empty deno run |`,
      "| --- | ---: | ---: | ---: | ---: | ---: |",
      ...formNames.map((form) => {
        const s = stats(samples[form]);
        return `| ${form} | ${options.rounds} | ${s.median.toFixed(1)} | ${s.min.toFixed(1)} | ` +
          `${seen[form] ?? "-"} | ${(s.median / e.median).toFixed(2)}x |`;
      }),
    ].join("\n");
    return { markdown, verdicts };
  } finally {
    await Promise.all(names.map((n) => qvm(env, ["stop", n, "--force"]).catch(() => {})));
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

/** Both lifecycle sections, as one. */
export async function lifecycleSections(): Promise<Section> {
  const start = await startOverhead();
  const ls = await lsWithRunning();
  return {
    markdown: `${start.markdown}\n\n${ls.markdown}`,
    verdicts: [...start.verdicts, ...ls.verdicts],
  };
}

if (import.meta.main) {
  const section = await lifecycleSections();
  console.log(section.markdown);
  for (const v of section.verdicts) console.log(`${v.status}  ${v.target}: ${v.detail}`);
}
