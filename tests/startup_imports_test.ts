/**
 * What the hot commands load at start-up, checked from Deno's own module graph (no timings here;
 * speed is measured in bench/): `qvm status`, `ls` and `info` import neither `node:util`,
 * `node:path`, `node:fs`, `node:module` nor the YAML parser, and the command table makes Deno
 * load no command's modules but the one that runs.
 */
import assert from "node:assert/strict";
import { diskFile } from "../src/config/mod.ts";
import { vmDiskFile } from "../src/vm/paths.ts";

const ROOT = new URL("../", import.meta.url);
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
  Deno.test(`qvm ${command} loads no node:util, node:path, node:fs or YAML parser`, async () => {
    const graph = [
      ...await moduleGraph("main.ts"),
      ...await moduleGraph(`src/cli/${command}.ts`),
    ];
    assert.deepEqual(heavyIn(graph), []);
  });
}

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
