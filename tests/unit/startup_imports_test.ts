/**
 * What the hot commands load at start-up, checked from Deno's own module graph (no timings here;
 * speed is measured in bench/): `qvm status`, `ls` and `info` import neither `node:util`,
 * `node:path`, `node:fs`, `node:module` nor the YAML parser, and the command table makes Deno
 * load no command's modules but the one that runs.
 */
import assert from "node:assert/strict";
import { diskFile } from "../../src/config/mod.ts";
import { vmDiskFile } from "../../src/vm_files.ts";

const ROOT = new URL("../../", import.meta.url);
const HEAVY = ["node:util", "node:path", "node:fs", "node:module", "yaml"];

interface GraphModule {
  specifier: string;
  dependencies?: { specifier: string; code?: { specifier?: string }; isDynamic?: boolean }[];
}

/**
 * The modules Deno loads to run `file`: its imports, transitively (type-only ones excluded); with
 * `dynamic`, also those of literal `import("…")`, which Deno reads at start-up as well.
 */
async function moduleGraph(file: string, options: { dynamic?: boolean } = {}): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", file],
    cwd: ROOT.pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: GraphModule[];
  };
  const modules = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const stack = [...info.roots];
  while (stack.length > 0) {
    const specifier = stack.pop()!;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dep of modules.get(specifier)?.dependencies ?? []) {
      if (dep.code?.specifier && (options.dynamic || !dep.isDynamic)) {
        stack.push(dep.code.specifier);
      }
    }
  }
  return [...seen];
}

function heavyIn(graph: string[]): string[] {
  return graph.filter((s) =>
    HEAVY.some((h) => s === h || s.includes(`/node_modules/${h}/`) || s.startsWith(`npm:${h}`))
  );
}

for (const command of ["status", "ls", "info"]) {
  Deno.test(`qvm ${command} reads no node:util, node:path, node:fs, YAML parser, config or cloud module, nor progress code, at start-up`, async () => {
    // Deno reads the modules behind a literal import("…") at start-up too, run or not.
    const graph = [
      ...await moduleGraph("main.ts", { dynamic: true }),
      ...await moduleGraph(`src/cli/${command}.ts`, { dynamic: true }),
    ];
    assert.deepEqual(heavyIn(graph), []);
    assert.deepEqual(
      graph.filter((s) => /\/src\/(config\/|cloud\/mod\.ts|qemu\/launch\.ts)/.test(s)),
      [],
    );
    // Progress lines are drawn only by the commands that wait.
    assert.deepEqual(graph.filter((s) => /\/src\/(cli\/_)?progress\.ts$/.test(s)), []);
    assert.ok(graph.some((s) => s.endsWith(`/src/cli/${command}.ts`)), "the graph was read");
  });
}

Deno.test("the quick routes of status and ls --json read no node: module but node:sqlite, no YAML parser, config, cloud or QMP module", async () => {
  const graph = await moduleGraph("src/cli/quick.ts", { dynamic: true });
  assert.deepEqual(heavyIn(graph), []);
  assert.deepEqual(graph.filter((s) => s.startsWith("node:") && s !== "node:sqlite"), []);
  assert.deepEqual(
    graph.filter((s) => /\/src\/(config\/|cloud\/|libvirt\/|qemu\/(launch|qmp)\.ts)/.test(s)),
    [],
  );
  assert.ok(graph.some((s) => s.endsWith("/src/cli/quick.ts")), "the graph was read");
});

/** Every `.ts` file under `dir` (relative to the repository). */
async function sources(dir: string): Promise<{ path: string; text: string }[]> {
  const out: { path: string; text: string }[] = [];
  for await (const entry of Deno.readDir(new URL(dir, ROOT))) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...await sources(path));
    else if (entry.name.endsWith(".ts")) {
      out.push({ path, text: await Deno.readTextFile(new URL(path, ROOT)) });
    }
  }
  return out;
}

Deno.test("qvm's modules import no node: module but node:sqlite, and load modules lazily only through lazyImport", async () => {
  const files = [
    ...await sources("src"),
    { path: "main.ts", text: await Deno.readTextFile(new URL("main.ts", ROOT)) },
  ];
  assert.ok(files.length > 50);
  for (const { path, text: source } of files) {
    const text = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
    for (const [, name] of text.matchAll(/(?:from|import)\s*\(?\s*"(node:[^"]+)"/g)) {
      assert.equal(name, "node:sqlite", `${path} imports ${name}`);
    }
    // A literal import("./x.ts") makes Deno read x's whole graph at start-up; only the YAML
    // parser, behind the config module that is itself loaded lazily, is imported that way.
    for (const [literal] of text.matchAll(/(?<!typeof )\bimport\(\s*["'`][^"'`]+["'`]\s*\)/g)) {
      if (path === "src/config/load.ts" && literal === 'import("yaml")') continue;
      if (path.startsWith("src/dist/")) continue; // build tools, not run by qvm
      assert.fail(`${path} has a literal ${literal}: use lazyImport (src/lazy.ts)`);
    }
  }
});

Deno.test("qvm waits with one sleep, timers.ts's: no module builds its own on setTimeout", async () => {
  const files = await sources("src");
  assert.ok(files.some((f) => f.path === "src/timers.ts"));
  for (const { path, text } of files) {
    if (path === "src/timers.ts") continue;
    assert.doesNotMatch(text, /\b(function|const|let)\s+sleep\b/, `${path} defines a sleep`);
    assert.doesNotMatch(
      text,
      /new Promise\(\s*\(?\s*\w+\s*\)?\s*=>\s*setTimeout\(/,
      `${path} sleeps on setTimeout`,
    );
  }
});

Deno.test("main.ts loads no command module before the command is chosen", async () => {
  const graph = await moduleGraph("main.ts", { dynamic: true });
  const commands = graph.filter((s) =>
    /\/src\/cli\/[a-z_]+\.ts$/.test(s) &&
    !/\/(context|registry|spec)\.ts$/.test(s)
  );
  assert.deepEqual(commands, []);
});

Deno.test("info's disk paths follow config's rule for default and explicit files", () => {
  const diskDir = "/var/lib/qvm/disks/0b7f1f7e-4a8c-4d6e-9f00-1234567890ab";
  const disks = [
    { name: "hdd", type: "qcow2" as const, size: "10G", interface: "virtio" as const },
    { name: "data.v2", type: "raw" as const, size: "1G", interface: "sata" as const },
    {
      name: "x",
      type: "qcow2" as const,
      size: "2G",
      interface: "virtio" as const,
      file: "/srv/x.qcow2",
    },
  ];
  for (const disk of disks) assert.equal(vmDiskFile(diskDir, disk), diskFile(disk, diskDir));
});
