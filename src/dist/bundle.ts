/**
 * `deno run -A src/dist/bundle.ts [--out dist/qvm]`: builds qvm's distributed form, one executable
 * file with a shebang that runs it under Deno.
 *
 * Why not `deno bundle -o qvm.js main.ts`: that one file inlines every command and the YAML
 * parser, and Deno compiles all of it (~0.7 MB) on every run. Here `deno bundle --code-splitting`
 * cuts qvm into one module per command plus shared chunks, and the hot commands (`HOT_COMMANDS`)
 * get one small module each. `dist/qvm` carries all of them gzipped, as strings; run as it is, it
 * unpacks them once into a private cache folder named by their hash, and `src/dist/install.ts`
 * unpacks them at install time. Either way a command loads only its own modules.
 */
import { VERSION } from "../version.ts";
import { LAZY_IMPORTER, LAZY_MODULES } from "../lazy.ts";
import { GLOBAL_OPTIONS } from "../cli/spec.ts";

const ROOT = new URL("../../", import.meta.url);

/**
 * How Deno runs qvm's built form: no config, lock or package.json of the folder qvm is run from
 * is read (they are the user's, not qvm's, and reading them costs start-up). V8 keeps source
 * positions as it compiles: by default it leaves them out and, at the first error created (a
 * missing file's NotFound, even caught), compiles again the functions on the stack, the module
 * of ~60 KB among them: ~1.5 ms of `status` here.
 */
export const DENO_FLAGS =
  "run -A --quiet --no-config --no-lock --no-code-cache --v8-flags=--no-enable-lazy-source-positions";

/** The first line of `dist/qvm`; `src/dist/install.ts` points it at a Deno binary. */
export const SHEBANG = `#!/usr/bin/env -S DENO_NO_PACKAGE_JSON=1 deno ${DENO_FLAGS}`;

/** esbuild's CommonJS helper: `import { createRequire as a } from "node:module"; var r = a(…)`. */
const REQUIRE_SHIM =
  /import\s*\{\s*createRequire as ([\w$]+)\s*\}\s*from\s*"node:module";?\s*var ([\w$]+)\s*=\s*\1\(import\.meta\.url\)/;

/** A chunk that is one CommonJS package: its only export is `export default require_x();`. */
const COMMONJS_CHUNK = /export\s+default\s+[\w$]+\(\);?\s*$/;

/** Every file under `dir`, as paths relative to it. */
function listFiles(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(prefix ? `${dir}/${prefix}` : dir)) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory) out.push(...listFiles(dir, path));
    else out.push(path);
  }
  return out.sort();
}

/** The command modules: every `src/cli/*.ts` that is not a private helper. */
function commandEntries(): string[] {
  return [...Deno.readDirSync(new URL("src/cli/", ROOT))]
    .filter((e) => e.isFile && e.name.endsWith(".ts") && !e.name.startsWith("_"))
    .map((e) => `src/cli/${e.name}`)
    .sort();
}

/**
 * Two fixes to esbuild's split output. (1) Its CommonJS helper chunk, which every module imports,
 * imports `node:module` (~15 ms of start-up) for `require`; `process.getBuiltinModule` gives the
 * same built-in modules with no import, and only when a CommonJS package (the YAML parser) runs.
 * (2) A CommonJS package split into its own chunk exports only `default`, so `import("yaml")`
 * lost its named exports; dynamic imports of such a chunk now resolve to its `default`.
 * Returns how many of each it patched.
 */
export function patchChunks(files: Record<string, string>): { shims: number; commonJs: number } {
  let shims = 0;
  for (const [path, text] of Object.entries(files)) {
    if (!REQUIRE_SHIM.test(text)) continue;
    files[path] = text.replace(
      REQUIRE_SHIM,
      (_, _create, name) => `var ${name}=(id)=>globalThis.process.getBuiltinModule(id)`,
    );
    shims++;
  }
  const commonJs = Object.keys(files).filter((path) =>
    COMMONJS_CHUNK.test(files[path]) && files[path].match(/\bexport\b/g)?.length === 1
  );
  for (const [path, text] of Object.entries(files)) {
    let patched = text;
    for (const target of commonJs) {
      const name = target.slice(target.lastIndexOf("/") + 1).replaceAll(".", "\\.");
      patched = patched.replace(
        new RegExp(`import\\(\\s*"((?:\\.\\.?/)+${name})"\\s*\\)`, "g"),
        (_, spec) => `import("${spec}").then((m)=>m.default)`,
      );
    }
    files[path] = patched;
  }
  return { shims, commonJs: commonJs.length };
}

/**
 * The code of `dist/qvm` after its shebang: find the command, make sure the modules it runs are
 * this build's (see `CACHE_SOURCE`), then run it. `files` maps each module to its size and SHA-256.
 */
function launcherSource(
  packed: string,
  hash: string,
  files: Record<string, [number, string]>,
): string {
  return `// qvm ${VERSION}: built by src/dist/bundle.ts from qvm's sources; do not edit.
const HASH = "${hash}";
/** Every module, as JSON \`{path: text}\`, gzipped and base64-encoded: read only to unpack. */
const PACKED = "${packed}";
/** Every module's size in bytes and SHA-256, to check an unpacked copy against. */
const FILES = ${JSON.stringify(files)};
const HOT = ${JSON.stringify(HOT_COMMANDS)};
const QUICK = ${JSON.stringify(QUICK_COMMANDS)};
${CACHE_SOURCE}
${commandSource()}
const needed = HOT.includes(command)
  ? [\`hot/\${command}.js\`, "package.json", ...(QUICK.includes(command) ? ["hot/quick.js"] : [])]
  : Object.keys(FILES);
let dir;
try {
  dir = await modulesDir(needed);
} catch (err) {
  console.error(\`qvm: cannot unpack qvm's modules into \${cacheRoot()} nor a temporary folder: \${err.message}\`);
  Deno.exit(1);
}
${dispatchSource('fileUrl(dir) + "/"')}`;
}

/**
 * How a launcher checks the files it runs, as JavaScript (`dist/qvm` and `dist/qvm-standalone`
 * share it). Needs a global `FILES`, each file's size in bytes and SHA-256. A file's SHA-256 is
 * computed once, and its identity (inode, size, mtime, ctime: any write or replacement changes the
 * ctime) recorded in `.verified`; later runs compare identities only, one lstat per file.
 */
export const VERIFY_SOURCE = `
/** True for a folder of ours no one else can write, false when missing; throws when unsafe. */
function privateDir(path) {
  let info;
  try {
    info = Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
  const uid = Deno.uid();
  if (!info.isDirectory || (uid !== null && info.uid !== uid) || (info.mode & 0o022) !== 0) {
    throw new Error(\`\${path} is not a private folder of yours\`);
  }
  return true;
}

async function sha256(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** What changes whenever a file is written or replaced: its inode, size, mtime and ctime. */
function identity(info) {
  return \`\${info.ino},\${info.size},\${info.mtime?.getTime()},\${info.ctime?.getTime()}\`;
}

const STAMP = ".verified";

/**
 * True when \`dir\` holds \`paths\` as this build made them: each file is hashed once, then known by
 * its identity (recorded in STAMP); a file whose identity changed is hashed again.
 */
async function verified(dir, paths) {
  let stamp = {};
  try {
    stamp = JSON.parse(Deno.readTextFileSync(\`\${dir}/\${STAMP}\`));
  } catch { /* none yet, or damaged: every file is hashed */ }
  let changed = false;
  for (const path of paths) {
    let info;
    try {
      info = Deno.lstatSync(\`\${dir}/\${path}\`);
    } catch {
      return false;
    }
    const id = identity(info);
    if (stamp[path] === id) continue;
    const [size, hash] = FILES[path];
    if (!info.isFile || info.size !== size) return false;
    if (await sha256(Deno.readFileSync(\`\${dir}/\${path}\`)) !== hash) return false;
    stamp[path] = id;
    changed = true;
  }
  if (changed) {
    try {
      const tmp = \`\${dir}/\${STAMP}.\${Deno.pid}\`;
      Deno.writeTextFileSync(tmp, JSON.stringify(stamp), { mode: 0o600 });
      Deno.renameSync(tmp, \`\${dir}/\${STAMP}\`);
    } catch { /* a read-only cache: checked by hash again next time */ }
  }
  return true;
}
`;

/**
 * How a launcher unpacks the files it carries, as JavaScript: needs a global `PACKED`, the files
 * as JSON `{path: text}`, gzipped and base64-encoded.
 */
export const UNPACK_SOURCE = `
async function unpack() {
  const bytes = Uint8Array.from(atob(PACKED), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

/** Writes \`files\` (\`{path: text}\`) into the folder \`dir\`, each new, mode 0600. */
function writeFiles(dir, files) {
  for (const [path, text] of Object.entries(files)) {
    const slash = path.lastIndexOf("/");
    if (slash > 0) Deno.mkdirSync(\`\${dir}/\${path.slice(0, slash)}\`, { recursive: true });
    Deno.writeTextFileSync(\`\${dir}/\${path}\`, text, { createNew: true, mode: 0o600 });
  }
}
`;

/**
 * How `dist/qvm` finds its modules, as JavaScript. They are unpacked once into a private cache
 * folder named by the build's hash (`~/.cache/qvm/dist-<hash>`, atomically, by rename), and every
 * run checks the ones it loads against `FILES` before running them (`VERIFY_SOURCE`: a hot command
 * checks its own module, any other command all of them). A file that differs (edited, truncated,
 * missing) makes the run unpack the build again, replacing the damaged folder. When the cache
 * cannot be used (no writable home, a cache folder that is not private), the modules go into a
 * private temporary folder for this run, removed when it ends.
 */
const CACHE_SOURCE = `${VERIFY_SOURCE}${UNPACK_SOURCE}
function cacheRoot() {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const base = xdg?.startsWith("/") ? xdg : \`\${Deno.env.get("HOME") || "/root"}/.cache\`;
  return \`\${base}/qvm\`;
}

/** Writes the build's modules into a new private folder in \`parent\`; returns its path. */
async function writeModules(parent, prefix) {
  const files = await unpack();
  const tmp = Deno.makeTempDirSync({ dir: parent, prefix });
  writeFiles(tmp, files);
  if (!(await verified(tmp, Object.keys(FILES)))) {
    Deno.removeSync(tmp, { recursive: true });
    throw new Error("the unpacked modules do not match this build");
  }
  return tmp;
}

/** The cache folder of this build, holding \`needed\` as built: unpacked (again) when it does not. */
async function cachedModules(needed) {
  const root = cacheRoot();
  const dir = \`\${root}/dist-\${HASH}\`;
  if (privateDir(dir) && await verified(dir, needed)) return dir;
  Deno.mkdirSync(root, { recursive: true, mode: 0o700 });
  privateDir(root);
  const fresh = await writeModules(root, ".unpack-");
  try {
    Deno.renameSync(fresh, dir);
    return dir;
  } catch { /* a damaged build is in the way, or a concurrent run unpacked it first */ }
  if (privateDir(dir) && await verified(dir, needed)) {
    Deno.removeSync(fresh, { recursive: true });
    return dir;
  }
  const old = \`\${fresh}.old\`;
  Deno.renameSync(dir, old);
  Deno.renameSync(fresh, dir);
  Deno.removeSync(old, { recursive: true });
  return dir;
}

/** The folder to run \`needed\` from: the cache, else a temporary folder for this run. */
async function modulesDir(needed) {
  try {
    return await cachedModules(needed);
  } catch {
    const tmp = await writeModules(undefined, "qvm-dist-");
    globalThis.addEventListener("unload", () => {
      try {
        Deno.removeSync(tmp, { recursive: true });
      } catch { /* gone */ }
    });
    return tmp;
  }
}

function fileUrl(path) {
  return \`file://\${path.split("/").map(encodeURIComponent).join("/")}\`;
}
`;

/** The launchers' lines that find the command named in `Deno.args`, as `main` finds it. */
export function commandSource(): string {
  const valued = Object.entries(GLOBAL_OPTIONS).filter(([, o]) => o.type === "string")
    .map(([name]) => name);
  return `let command;
for (let i = 0; i < Deno.args.length; i++) {
  const arg = Deno.args[i];
  if (!arg.startsWith("-")) {
    command = arg;
    break;
  }
  if (!arg.includes("=") && ${JSON.stringify(valued)}.includes(arg.replace(/^--?/, ""))) i++;
}`;
}

/**
 * The launchers' last lines: run `command` from the build at `lib` (a JS expression for its
 * `file:` URL, ending in `/`): a command of `HOT_COMMANDS` from its own single module
 * (`hot/<command>.js`), any other from the split modules (`main.js` and what it loads). `check`,
 * when given, names an async function the split modules' loader awaits with a module's path in
 * the build (`src/cli/add.js`) before it imports that module.
 */
export function dispatchSource(lib: string, check?: string): string {
  const load = check
    ? `async (path) => {
    const file = path.replace(/\\.ts$/, ".js");
    await ${check}(file);
    return import(LIB + file);
  }`
    : `(path) =>
    import(LIB + path.replace(/\\.ts$/, ".js"))`;
  return `const LIB = ${lib};
if (${JSON.stringify(QUICK_COMMANDS)}.includes(command)) {
  const { quick } = await import(\`\${LIB}hot/quick.js\`);
  const code = await quick(Deno.args);
  if (code !== undefined) Deno.exit(code);
}
if (${JSON.stringify(HOT_COMMANDS)}.includes(command)) {${
    check ? `\n  await ${check}(\`hot/\${command}.js\`);` : ""
  }
  await import(\`\${LIB}hot/\${command}.js\`);
} else {
  globalThis[Symbol.for("${LAZY_IMPORTER.description}")] = ${load};
  const { main } = await import(\`\${LIB}main.js\`);
  Deno.exit(await main(Deno.args));
}
`;
}

/**
 * The launchers' last lines: run the command named in `Deno.args` from the build at `lib` (a JS
 * expression for its `file:` URL, ending in `/`): a command of `HOT_COMMANDS` from its own
 * single module (`hot/<command>.js`), any other from the split modules (`main.js` and what it
 * loads). The command is found as `main` finds it (global options before it may take a value).
 */
export function routeSource(lib: string): string {
  return `${commandSource()}\n${dispatchSource(lib)}`;
}

/**
 * The commands that run from one module of their own: the ones scripts and prompts call most
 * (qvm's fast paths). Deno loads a small single module faster than the same code split in files;
 * `bench/RESULTS.md` compares the installed form with running from source.
 */
export const HOT_COMMANDS = ["status", "ls", "info"] as const;

/**
 * The hot commands a launcher first tries by their quick route (`hot/quick.js`, built from
 * `src/cli/quick.ts`), loading their own module only when the route leaves the command to it.
 */
export const QUICK_COMMANDS = ["status", "ls"] as const;

/** Every lazy loader in qvm's sources (`cloudModule` → `src/cloud/mod.ts`, …). */
async function lazyLoaders(): Promise<Map<string, string>> {
  const loaders = new Map<string, string>();
  for (const path of listFiles(new URL("src/", ROOT).pathname)) {
    const text = await Deno.readTextFile(new URL(`src/${path}`, ROOT));
    for (const [, name, target] of text.matchAll(LOADER)) loaders.set(name, target);
  }
  return loaders;
}

/**
 * The modules `roots` load when they run: their static imports, and what `lazyImport` reaches
 * through `loaders`.
 */
async function reachable(roots: string[], loaders: Map<string, string>): Promise<Set<string>> {
  const seen = new Set<string>();
  let pending = roots;
  while (pending.length > 0) {
    const info = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", ...pending.slice(0, 1)],
      cwd: ROOT.pathname,
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!info.success) throw new Error(`deno info ${pending[0]} failed`);
    const graph = JSON.parse(new TextDecoder().decode(info.stdout)) as {
      modules: { specifier: string; dependencies?: { code?: { specifier: string } }[] }[];
    };
    const byUrl = new Map(graph.modules.map((m) => [m.specifier, m]));
    const next: string[] = pending.slice(1);
    const walk = (url: string) => {
      const path = url.startsWith(ROOT.href) ? url.slice(ROOT.href.length) : undefined;
      if (path === undefined || seen.has(path)) return;
      seen.add(path);
      for (const dep of byUrl.get(url)?.dependencies ?? []) if (dep.code) walk(dep.code.specifier);
    };
    walk(new URL(pending[0], ROOT).href);
    for (const path of seen) {
      const text = await Deno.readTextFile(new URL(path, ROOT));
      for (const [name, target] of loaders) {
        if (!seen.has(target) && !next.includes(target) && text.includes(`${name}()`)) {
          next.push(target);
        }
      }
    }
    pending = next;
  }
  return seen;
}

/** A loader `lazy.ts` style: `export const name = () => lazyImport<…>("src/x.ts")`. */
const LOADER = /export const (\w+) = \(\) =>\s*lazyImport<[^>]*>\("([^"]+)"\)/g;

/**
 * `command` as one minified module: main, the command, and every module `lazyImport` can reach
 * from them, inlined (so each class exists once in the process). Returns its text.
 */
async function hotBundle(command: string, loaders: Map<string, string>): Promise<string> {
  const entry = `src/cli/${command}.ts`;
  const lazy = [...await reachable(["main.ts", entry], loaders)].filter((path) =>
    (LAZY_MODULES as readonly string[]).includes(path)
  );
  const tmp = await Deno.makeTempDir({ prefix: "qvm-hot-" });
  try {
    const url = (path: string) => JSON.stringify(new URL(path, ROOT).href);
    const cases = [entry, ...lazy].map((path) =>
      `    case "${path}": return import(${url(path)});`
    );
    return await bundleOne(tmp, `${command} module`, [
      `import { main } from ${url("main.ts")};`,
      `(globalThis as Record<symbol, unknown>)[Symbol.for("${LAZY_IMPORTER.description}")] = (`,
      `  path: string,`,
      `) => {`,
      `  switch (path) {`,
      ...cases,
      `  }`,
      `  return Promise.reject(new Error(\`\${path} is not in qvm's ${command} module\`));`,
      `};`,
      `Deno.exit(await main(Deno.args));`,
    ]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/**
 * The quick routes (`src/cli/quick.ts`) as one minified module, `hot/quick.js`: a launcher runs
 * it before a command of `QUICK_COMMANDS`' own module, which it loads only when the quick route
 * leaves the command to it. Only what the routes use is in it (~30 KB against ~60 KB).
 */
async function quickBundle(): Promise<string> {
  const tmp = await Deno.makeTempDir({ prefix: "qvm-quick-" });
  try {
    const url = JSON.stringify(new URL("src/cli/quick.ts", ROOT).href);
    return await bundleOne(tmp, "quick module", [`export { quick } from ${url};`]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** The module whose source is `lines`, bundled into one minified module in `tmp`; its text. */
async function bundleOne(tmp: string, what: string, lines: string[]): Promise<string> {
  await Deno.writeTextFile(`${tmp}/entry.ts`, [...lines, ""].join("\n"));
  const result = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--minify",
      "--platform",
      "deno",
      "-o",
      `${tmp}/out.js`,
      `${tmp}/entry.ts`,
    ],
    cwd: ROOT.pathname,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!result.success) throw new Error(`deno bundle of qvm's ${what} failed`);
  const files = { "out.js": await Deno.readTextFile(`${tmp}/out.js`) };
  patchChunks(files);
  if (/from\s*"node:(?!sqlite")/.test(files["out.js"])) {
    throw new Error(`qvm's ${what} imports a node: module besides node:sqlite`);
  }
  return files["out.js"];
}

/** The build hash and modules (`{path: text}`) inside the text of a `dist/qvm`. */
export async function unpackBuild(
  text: string,
): Promise<{ hash: string; files: Record<string, string> }> {
  const hash = text.match(/^const HASH = "([0-9a-f]+)";$/m)?.[1];
  const packed = text.match(/^const PACKED = "([A-Za-z0-9+/=]+)";$/m)?.[1];
  if (!hash || !packed) {
    throw new Error("not a qvm build (no packed modules): run deno task bundle");
  }
  const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return { hash, files: JSON.parse(await new Response(stream).text()) };
}

/** `text` gzipped and base64-encoded, as the launchers' `PACKED` holds it. */
export async function gzipBase64(text: string): Promise<string> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** The SHA-256 of `data` (text as UTF-8), in hex. */
export async function sha256Hex(data: string | Uint8Array<ArrayBuffer>): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Runs `deno bundle --code-splitting` on main.ts and every command; returns the output files. */
async function splitBundle(): Promise<Record<string, string>> {
  const tmp = await Deno.makeTempDir({ prefix: "qvm-bundle-" });
  try {
    const result = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--code-splitting",
        "--platform",
        "deno",
        "--outdir",
        tmp,
        "main.ts",
        ...commandEntries(),
        ...LAZY_MODULES,
      ],
      cwd: ROOT.pathname,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!result.success) throw new Error("deno bundle failed");
    const files: Record<string, string> = {};
    for (const path of listFiles(tmp)) {
      if (path.endsWith(".js")) files[path] = await Deno.readTextFile(`${tmp}/${path}`);
    }
    if (!("main.js" in files)) throw new Error("deno bundle wrote no main.js");
    return files;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** The text of a `dist/qvm` carrying `files` (`{path: text}`), named by their hash. */
export async function packBuild(files: Record<string, string>): Promise<string> {
  const json = JSON.stringify(files);
  const hash = (await sha256Hex(json)).slice(0, 16);
  const manifest: Record<string, [number, string]> = {};
  for (const [path, text] of Object.entries(files)) {
    manifest[path] = [new TextEncoder().encode(text).length, await sha256Hex(text)];
  }
  return `${SHEBANG}\n${launcherSource(await gzipBase64(json), hash, manifest)}`;
}

/** Builds `out` (default `dist/qvm`), mode 0755, written atomically; returns its size in bytes. */
export async function buildDist(out = new URL("dist/qvm", ROOT).pathname): Promise<number> {
  const files = await splitBundle();
  const patched = patchChunks(files);
  if (patched.shims !== 1 || patched.commonJs !== 1) {
    throw new Error(
      `expected one CommonJS helper and one CommonJS package (yaml) in the bundle, found ` +
        `${patched.shims} and ${patched.commonJs}: check src/dist/bundle.ts against this Deno`,
    );
  }
  const loaders = await lazyLoaders();
  for (const command of HOT_COMMANDS) {
    files[`hot/${command}.js`] = await hotBundle(command, loaders);
  }
  files["hot/quick.js"] = await quickBundle();
  // The modules are ES modules whatever a package.json further up (say in ~) declares.
  files["package.json"] = '{"type":"module"}\n';
  const text = await packBuild(files);
  const slash = out.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(out.slice(0, slash), { recursive: true });
  const partial = `${out}.partial`;
  await Deno.writeTextFile(partial, text, { mode: 0o755 });
  await Deno.chmod(partial, 0o755);
  await Deno.rename(partial, out);
  return new TextEncoder().encode(text).length;
}

if (import.meta.main) {
  const out = Deno.args[0] === "--out" ? Deno.args[1] : undefined;
  const size = await buildDist(out);
  console.log(`built ${out ?? "dist/qvm"} (${Math.round(size / 1024)} KiB)`);
}
