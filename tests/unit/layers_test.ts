/**
 * The layer table, checked on every import in `src/`: cli → vm → cloud/libvirt → qemu/state →
 * config → root helpers (`src/*.ts`). A module imports only from its own folder or a lower layer,
 * type-only imports included; cloud and libvirt never import each other; and no chain of imports
 * leads back to the file it starts from. Imports are read from Deno's own module graph (static,
 * `export … from`, `import type`, `typeof import(…)`, literal `import(…)`), plus the modules qvm
 * loads by path through `lazyImport` (src/lazy.ts), which Deno cannot see.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url);

/** Each layer's rank; a module may import only from its own folder or a lower rank. */
const RANKS: { prefix: string; layer: string; rank: number }[] = [
  { prefix: "main.ts", layer: "main", rank: 7 },
  { prefix: "src/dist/", layer: "dist", rank: 7 },
  { prefix: "src/cli/", layer: "cli", rank: 6 },
  { prefix: "src/vm/", layer: "vm", rank: 5 },
  { prefix: "src/cloud/", layer: "cloud", rank: 4 },
  { prefix: "src/libvirt/", layer: "libvirt", rank: 4 },
  { prefix: "src/qemu/", layer: "qemu", rank: 3 },
  { prefix: "src/state/", layer: "state", rank: 3 },
  { prefix: "src/config/", layer: "config", rank: 2 },
  { prefix: "src/", layer: "root", rank: 1 },
];

/** Layers of one rank that must not import each other. */
const APART = [["cloud", "libvirt"]];

/** How one module reaches another. */
type Kind = "static" | "type" | "dynamic" | "lazy";

/** One import: from a module to a module, both by path from the repository root. */
interface Edge {
  from: string;
  to: string;
  kind: Kind;
}

/** Every `.ts` file under `dir` of `root`, by path from `root`. */
async function sources(root: URL, dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(new URL(dir, root))) {
    const path = `${dir}${entry.name}`;
    if (entry.isDirectory) out.push(...await sources(root, `${path}/`));
    else if (entry.name.endsWith(".ts")) out.push(path);
  }
  return out.sort();
}

/** The imports among `root`'s modules: `src/**` and `main.ts` when there is one. */
async function importGraph(root: URL): Promise<{ files: string[]; edges: Edge[] }> {
  const files = await sources(root, "src/");
  try {
    await Deno.stat(new URL("main.ts", root));
    files.push("main.ts");
  } catch {
    // a fixture without an entry point
  }
  const tmp = await Deno.makeTempDir({ prefix: "qvm-layers-" });
  try {
    const entry = `${tmp}/all.ts`;
    await Deno.writeTextFile(
      entry,
      files.map((f) => `import ${JSON.stringify(new URL(f, root).href)};\n`).join(""),
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: root.pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: {
        specifier: string;
        dependencies?: {
          code?: { specifier: string };
          type?: { specifier: string };
          isDynamic?: boolean;
        }[];
      }[];
    };
    // qvm's own modules only: a package under node_modules/ (a real folder in a fresh checkout,
    // not a link out of it) is no layer of the table.
    const local = (url: string | undefined) => {
      const path = url?.startsWith(root.href) ? url.slice(root.href.length) : undefined;
      return path === "main.ts" || path?.startsWith("src/") ? path : undefined;
    };
    const edges: Edge[] = [];
    for (const module of info.modules) {
      const from = local(module.specifier);
      if (from === undefined) continue;
      for (const dep of module.dependencies ?? []) {
        const code = local(dep.code?.specifier);
        const type = local(dep.type?.specifier);
        if (code) edges.push({ from, to: code, kind: dep.isDynamic ? "dynamic" : "static" });
        if (type && type !== code) edges.push({ from, to: type, kind: "type" });
      }
    }
    for (const from of files) {
      const text = (await Deno.readTextFile(new URL(from, root)))
        .replace(/\/\*[\s\S]*?\*\//g, "")
        .replace(/^\s*\/\/.*$/gm, "");
      for (const [, to] of text.matchAll(/\blazyImport\b[^;]*?\(\s*"(src\/[^"]+\.ts)"\s*\)/g)) {
        edges.push({ from, to, kind: "lazy" });
      }
    }
    return { files, edges };
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** The layer `path` belongs to. */
function layerOf(path: string): { layer: string; rank: number } {
  const found = RANKS.find((r) => path === r.prefix || path.startsWith(r.prefix));
  if (!found) throw new Error(`${path} is in no layer`);
  return found;
}

/** The imports that run back up the table or between layers kept apart, one line each. */
function upwardImports(edges: Edge[]): string[] {
  const out: string[] = [];
  for (const edge of edges) {
    const from = layerOf(edge.from);
    const to = layerOf(edge.to);
    if (from.layer === to.layer || from.rank > to.rank) continue;
    const apart = APART.some((pair) => pair.includes(from.layer) && pair.includes(to.layer));
    if (from.rank < to.rank || apart) {
      out.push(`${edge.from} (${from.layer}) imports ${edge.to} (${to.layer}) [${edge.kind}]`);
    }
  }
  return out.sort();
}

/** Every set of files that import each other in a circle (strongly connected, 2+ files or a self-import). */
function importCycles(files: string[], edges: Edge[]): string[][] {
  const next = new Map<string, Set<string>>(files.map((f) => [f, new Set()]));
  for (const edge of edges) next.get(edge.from)?.add(edge.to);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (file: string) => {
    index.set(file, index.size);
    low.set(file, index.get(file)!);
    stack.push(file);
    onStack.add(file);
    for (const to of next.get(file) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(file, Math.min(low.get(file)!, low.get(to)!));
      } else if (onStack.has(to)) {
        low.set(file, Math.min(low.get(file)!, index.get(to)!));
      }
    }
    if (low.get(file) === index.get(file)) {
      const members: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        members.push(member);
      } while (member !== file);
      if (members.length > 1 || next.get(file)!.has(file)) cycles.push(members.sort());
    }
  };
  for (const file of files) if (!index.has(file)) visit(file);
  return cycles.sort((a, b) => a[0].localeCompare(b[0]));
}

Deno.test("no module in src/ imports a layer above its own, and cloud and libvirt stay apart", async () => {
  const { files, edges } = await importGraph(ROOT);
  assert.ok(files.length > 80 && edges.length > 300, "the graph was read");
  assert.ok(edges.some((e) => e.kind === "lazy"), "lazy loads were read");
  assert.ok(edges.some((e) => e.kind === "type"), "type-only imports were read");
  assert.deepEqual(upwardImports(edges), []);
});

Deno.test("no chain of imports in src/ leads back to the file it starts from", async () => {
  const { files, edges } = await importGraph(ROOT);
  assert.deepEqual(importCycles(files, edges), []);
});

Deno.test("the layer check catches an upward import of each kind, a sideways one, and a circle", async () => {
  const root = await Deno.makeTempDir({ prefix: "qvm-layers-fixture-" });
  try {
    const files: Record<string, string> = {
      "src/timers.ts": 'import type { Config } from "./config/types.ts";\nexport const t = 1;\n',
      "src/config/types.ts": "export interface Config {\n  name: string;\n}\n",
      "src/config/load.ts": 'export { start } from "../vm/start.ts";\n',
      "src/qemu/argv.ts": 'export const f = () => import("../cloud/seed.ts");\n',
      "src/state/store.ts": [
        'import { lazyImport } from "../lazy.ts";',
        'export const m = () => lazyImport<typeof import("../cli/ls.ts")>("src/cli/ls.ts");',
        "",
      ].join("\n"),
      "src/lazy.ts": "export function lazyImport<T>(_: string): Promise<T> {\n  throw 0;\n}\n",
      "src/cloud/seed.ts": 'import "../libvirt/xml.ts";\nexport const s = 1;\n',
      "src/libvirt/xml.ts": "export const x = 1;\n",
      "src/vm/start.ts": 'import { b } from "./b.ts";\nexport const start = b;\n',
      "src/vm/b.ts": 'import { start } from "./start.ts";\nexport const b = 1;\nvoid start;\n',
      "src/cli/ls.ts": 'import { start } from "../vm/start.ts";\nexport const ls = start;\n',
    };
    for (const [path, text] of Object.entries(files)) {
      await Deno.mkdir(`${root}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
      await Deno.writeTextFile(`${root}/${path}`, text);
    }
    const { files: found, edges } = await importGraph(new URL(`file://${root}/`));
    assert.deepEqual(upwardImports(edges), [
      "src/cloud/seed.ts (cloud) imports src/libvirt/xml.ts (libvirt) [static]",
      "src/config/load.ts (config) imports src/vm/start.ts (vm) [static]",
      "src/qemu/argv.ts (qemu) imports src/cloud/seed.ts (cloud) [dynamic]",
      "src/state/store.ts (state) imports src/cli/ls.ts (cli) [lazy]",
      "src/state/store.ts (state) imports src/cli/ls.ts (cli) [type]",
      "src/timers.ts (root) imports src/config/types.ts (config) [type]",
    ]);
    assert.deepEqual(importCycles(found, edges), [["src/vm/b.ts", "src/vm/start.ts"]]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
