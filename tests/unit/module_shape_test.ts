/**
 * Where a name is found: a folder's `mod.ts` only re-exports its own modules (logic in it would
 * hide under a name that says "re-exports"), and no other module passes on a name from another
 * folder (a reader would open a file that only points elsewhere; import from the owner instead).
 */
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url);

/** Every `.ts` file under `dir` of `root`, by path from `root`, with its text. */
async function sources(root: URL, dir: string): Promise<{ path: string; text: string }[]> {
  const out: { path: string; text: string }[] = [];
  for await (const entry of Deno.readDir(new URL(dir, root))) {
    const path = `${dir}${entry.name}`;
    if (entry.isDirectory) out.push(...await sources(root, `${path}/`));
    else if (entry.name.endsWith(".ts")) {
      out.push({ path, text: await Deno.readTextFile(new URL(path, root)) });
    }
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/** `text` without comments, one statement per entry (split at `;`), blank ones left out. */
function statements(text: string): string[] {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "").split(";")
    .map((s) => s.trim()).filter((s) => s !== "");
}

const RE_EXPORT = /^export\s+(type\s+)?\{[^}]*\}\s+from\s+"([^"]+)"$/;

/** One line per module of `root`'s `src/` that breaks either rule. */
async function shapeProblems(root: URL): Promise<string[]> {
  const problems: string[] = [];
  for (const { path, text } of await sources(root, "src/")) {
    const isMod = /^src\/[a-z_]+\/mod\.ts$/.test(path);
    for (const statement of statements(text)) {
      const reExport = RE_EXPORT.exec(statement);
      if (isMod && (!reExport || !reExport[2].startsWith("./"))) {
        problems.push(`${path} does more than re-export its folder: ${statement.split("\n")[0]}`);
        break; // the rest of a function's body would be reported again
      } else if (!isMod && reExport && reExport[2].startsWith("../")) {
        problems.push(`${path} passes on names from ${reExport[2]}`);
      }
    }
  }
  return problems;
}

Deno.test("every mod.ts only re-exports its folder's modules, and no module passes on another folder's names", async () => {
  const problems = await shapeProblems(ROOT);
  assert.deepEqual(problems, []);
});

Deno.test("the module shape check catches logic in a mod.ts and a name passed on from another folder", async () => {
  const root = await Deno.makeTempDir({ prefix: "qvm-shape-fixture-" });
  try {
    const files: Record<string, string> = {
      "src/vm_files.ts": "export const vmPaths = 1;\n",
      "src/cloud/mod.ts": [
        "/** The cloud module. */",
        'export { prepare } from "./prepare.ts";',
        "export function usesCloud(): boolean {\n  return true;\n}",
        "",
      ].join("\n"),
      "src/state/mod.ts":
        'export { store } from "./store.ts";\nexport { vmPaths } from "../vm_files.ts";\n',
      "src/state/store.ts": "export const store = 1;\n",
      "src/cloud/prepare.ts": "export const prepare = 1;\n",
      "src/vm/paths.ts": 'export { type X, vmPaths } from "../vm_files.ts";\n',
      "src/vm/start.ts": 'export { KvmFault } from "./fault.ts";\n',
      "src/vm/fault.ts": "export class KvmFault {}\n",
    };
    for (const [path, text] of Object.entries(files)) {
      await Deno.mkdir(`${root}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
      await Deno.writeTextFile(`${root}/${path}`, text);
    }
    assert.deepEqual(await shapeProblems(new URL(`file://${root}/`)), [
      "src/cloud/mod.ts does more than re-export its folder: export function usesCloud(): boolean {",
      'src/state/mod.ts does more than re-export its folder: export { vmPaths } from "../vm_files.ts"',
      "src/vm/paths.ts passes on names from ../vm_files.ts",
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
