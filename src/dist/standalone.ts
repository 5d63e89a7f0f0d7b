/**
 * `deno run -A src/dist/standalone.ts [--out dist/qvm-standalone] [--from dist/qvm] [--gzip]`:
 * builds `dist/qvm-standalone`, one executable file for linux-x64 that needs neither Deno nor Node:
 * a POSIX sh header, then qvm's modules (from `dist/qvm`, see `bundle.ts`) and the pinned Deno of
 * `node_modules`, compressed with xz (or gzip: `--gzip`, for machines without xz).
 *
 * The first run unpacks them into a private cache folder, `~/.cache/qvm/standalone-<hash>/`
 * (`$XDG_CACHE_HOME/qvm`): Deno is checked against its SHA-256 before it runs, then it writes and
 * checks qvm's modules and records every file's identity (`VERIFY_SOURCE`). Later runs cost the
 * installed form's start-up: the header's warm path is shell builtins only (the folders are ours
 * and no symlinks, the stamp is there) and `exec`s that Deno; its first module compares the
 * identities (one lstat per file, no hashing) before it loads anything else. A file that differs
 * (edited, replaced, truncated, removed) or a folder others may write makes the run unpack again.
 * When the cache cannot be used, each run unpacks into a private temporary folder, removed after.
 */
import {
  commandSource,
  DENO_FLAGS,
  dispatchSource,
  gzipBase64,
  HOT_COMMANDS,
  QUICK_COMMANDS,
  sha256Hex,
  UNPACK_SOURCE,
  unpackBuild,
  VERIFY_SOURCE,
} from "./bundle.ts";
import { DEFAULT_FROM, readBuild } from "./install.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** How the runtime is compressed: the tool that unpacks it must be on the user's machine. */
export type Compression = "xz" | "gzip";

/** Per compression: the file name suffix, the build's arguments and the default level. */
const COMPRESSIONS: Record<Compression, { suffix: string; args: string[]; level: number }> = {
  // -T0: every core; xz -6 takes ~2.5 min on 2 busy cores, once per Deno (see runtimeCache).
  xz: { suffix: "xz", args: ["-T0", "-c"], level: 6 },
  gzip: { suffix: "gz", args: ["-c", "-n"], level: 6 },
};

/** What a standalone build is made of and where it goes. */
export interface StandaloneOptions {
  /** The standalone file to write. */
  out: string;
  /** The built `dist/qvm` whose modules it carries. */
  from: string;
  /** The Deno binary it carries (linux-x64). */
  runtime: string;
  compression: Compression;
  /** The compression level (xz/gzip `-N`); lower builds faster, the file is larger. */
  level: number;
  /** A folder that keeps compressed runtimes by their hash, so a rebuild need not compress again. */
  runtimeCache: string;
}

/** The defaults: `dist/qvm` to `dist/qvm-standalone`, node_modules' Deno, xz -6. */
export function defaultStandaloneOptions(): StandaloneOptions {
  return {
    out: `${ROOT}dist/qvm-standalone`,
    from: DEFAULT_FROM,
    runtime: `${ROOT}node_modules/.bin/deno`,
    compression: "xz",
    level: COMPRESSIONS.xz.level,
    runtimeCache: `${ROOT}dist/.runtime`,
  };
}

/** The options of `standalone.ts`'s command line. */
export function parseStandaloneArgs(argv: string[]): StandaloneOptions {
  const options = defaultStandaloneOptions();
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    if (flag === "--gzip") {
      options.compression = "gzip";
      options.level = COMPRESSIONS.gzip.level;
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--out") options.out = value;
    else if (flag === "--from") options.from = value;
    else throw new Error(`unknown option '${flag}' (use --out FILE, --from FILE, --gzip)`);
  }
  return options;
}

/** The header's view of a byte range of the file: 1-based start (as `tail -c +N` takes it). */
interface Part {
  start: number;
  length: number;
  sha256: string;
}

/** What the shell header needs to know. */
interface HeaderFacts {
  version: string;
  deno: string;
  hash: string;
  compression: Compression;
  unpacker: Part;
  runtime: Part;
}

/**
 * The shell header: its warm path uses builtins only (a fork would cost more than everything else
 * it does), then `exec`s the cached Deno; the checks by identity happen in `qvm.mjs` (see
 * `launcherSource`). The cold path needs coreutils and the decompressor, nothing else.
 */
export function headerSource(f: HeaderFacts): string {
  const run = DENO_FLAGS;
  const tool = f.compression;
  const pkg = tool === "xz" ? "xz-utils" : "gzip";
  return `#!/bin/sh
# qvm ${f.version} standalone (linux-x64): Deno ${f.deno} and qvm's modules in one file, built by
# src/dist/standalone.ts; do not edit. The first run unpacks them (with ${tool}) into a private
# cache folder, \${XDG_CACHE_HOME:-~/.cache}/qvm/standalone-${f.hash}/, checked by SHA-256; later
# runs start that Deno. Without a usable cache, each run unpacks into a temporary folder.
case \${XDG_CACHE_HOME-} in /*) c=$XDG_CACHE_HOME/qvm ;; *) c=\${HOME:-/root}/.cache/qvm ;; esac
d=$c/standalone-${f.hash}
export DENO_NO_PACKAGE_JSON=1 DENO_NO_UPDATE_CHECK=1 QVM_STANDALONE_FILE="$0"
if [ -z "\${QVM_STANDALONE_FRESH-}" ] && [ -O "$c" ] && [ ! -h "$c" ] && [ -O "$d" ] &&
  [ ! -h "$d" ] && [ -f "$d/.verified" ] && [ -x "$d/deno" ]; then
  exec "$d/deno" ${run} "$d/qvm.mjs" "$@"
fi
# Set when the copy there is damaged (the launcher found it so, or it is incomplete): replace it.
replace=\${QVM_STANDALONE_FRESH-}
if [ -e "$d" ] || [ -h "$d" ]; then replace=1; fi
export QVM_STANDALONE_FRESH=1
say() { printf 'qvm: %s\\n' "$*" >&2; }
# True for a folder of ours, no symlink, that no one else may write.
private() {
  [ -d "$1" ] && [ -O "$1" ] && [ ! -h "$1" ] || return 1
  case $(stat -c %A -- "$1") in d????-??-?) return 0 ;; esac
  return 1
}
# Unpacks into the new private folder $1: Deno, checked by SHA-256 before it runs, then the
# unpacker, which writes qvm's modules, hashes every file and records their identities.
unpack() {
  tail -c +${f.unpacker.start} -- "$0" | head -c ${f.unpacker.length} > "$1/unpack.js" &&
    [ "$(sha256sum < "$1/unpack.js")" = "${f.unpacker.sha256}  -" ] &&
    tail -c +${f.runtime.start} -- "$0" | ${tool} -dc > "$1/deno" &&
    [ "$(sha256sum < "$1/deno")" = "${f.runtime.sha256}  -" ] && chmod 700 "$1/deno" &&
    "$1/deno" run --quiet --no-config --no-lock --no-code-cache --allow-read --allow-write \\
      "$1/unpack.js" "$1" && rm -f -- "$1/unpack.js"
}
# Unpacks into the cache folder, replacing what is there; fails when the cache cannot be used.
fresh() {
  mkdir -p -m 700 -- "$c" 2>/dev/null
  private "$c" || return 1
  t=$(mktemp -d -- "$c/.unpack-XXXXXX" 2>/dev/null) || return 1
  if [ -t 2 ]; then say "unpacking Deno and qvm's modules into $d (once)"; fi
  if unpack "$t"; then
    mv -T -- "$t" "$d" 2>/dev/null && return 0
    if [ -z "$replace" ]; then
      # A concurrent first run was quicker: run from its copy, which the launcher checks.
      rm -rf -- "$t"
      unset QVM_STANDALONE_FRESH
      return 0
    fi
    # A damaged copy is in the way: this one takes its place.
    mv -T -- "$d" "$t.old" && mv -T -- "$t" "$d" && { rm -rf -- "$t.old"; return 0; }
  fi
  rm -rf -- "$t"
  return 1
}
if [ "$(uname -sm)" != "Linux x86_64" ]; then
  say "this file runs on Linux x86_64 only, not on $(uname -sm)"
  exit 1
fi
if ! command -v ${tool} >/dev/null 2>&1; then
  say "the first run unpacks Deno with ${tool}, which is not installed (Debian: apt-get install ${pkg})"
  exit 1
fi
if fresh; then
  exec "$d/deno" ${run} "$d/qvm.mjs" "$@"
fi
# No usable cache (no writable home, a cache folder others may write): a private temporary folder.
t=$(mktemp -d -- "\${TMPDIR:-/tmp}/qvm-standalone-XXXXXX" 2>/dev/null) || {
  say "cannot make a temporary folder in \${TMPDIR:-/tmp}"
  exit 1
}
if [ -t 2 ]; then say "no usable cache in $c: unpacking into $t for this run"; fi
trap 'rm -rf -- "$t"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
unpack "$t" || {
  say "cannot unpack Deno and qvm's modules into $t"
  exit 1
}
"$t/deno" ${run} "$t/qvm.mjs" "$@"
exit
`;
}

/**
 * The `file:` URL of the unpacked `lib/` folder, beside `qvm.mjs`, as a JS expression: by string
 * slicing, since a first `new URL` costs ~0.2 ms of every run here.
 */
const LIB_URL = 'import.meta.url.slice(0, import.meta.url.lastIndexOf("/") + 1) + "lib/"';

/**
 * `qvm.mjs`, the first module the cached Deno runs: checks by identity (`VERIFY_SOURCE`) the files
 * this run loads, no more, and that its folder is private, then runs the command as the installed
 * form does. Checked before anything runs: Deno itself and, for `status` and `ls`, the quick
 * routes' module (their own is checked when the route leaves the command to it), for `info` its
 * one module, else `main.js` and what it imports. A command's module is checked, with every module it imports
 * or can load lazily (`DEPS`), when `main` loads it: before the command does anything. When a
 * check fails, the standalone file unpacks a fresh copy and runs the command from there.
 */
function launcherSource(
  version: string,
  parts: { files: Record<string, [number, string]>; deps: Record<string, string[]> },
): string {
  const names = Object.keys(parts.files);
  const deps = names.map((name) =>
    (parts.deps[name.slice("lib/".length)] ?? []).map((dep) => names.indexOf(`lib/${dep}`))
  );
  return `// qvm ${version} standalone: built by src/dist/standalone.ts; do not edit.
/** Every file's size in bytes and SHA-256, to check the unpacked copy against. */
const FILES = ${JSON.stringify(parts.files)};
const NAMES = Object.keys(FILES);
/** Per file of NAMES, the modules it imports or loads lazily (their places in NAMES). */
const DEPS = ${JSON.stringify(deps)};
const HOT = ${JSON.stringify(HOT_COMMANDS)};
const QUICK = ${JSON.stringify(QUICK_COMMANDS)};
${VERIFY_SOURCE}
${commandSource()}
const DIR = import.meta.dirname;
const SELF = Deno.env.get("QVM_STANDALONE_FILE");
const FRESH = Deno.env.get("QVM_STANDALONE_FRESH") === "1";
Deno.env.delete("QVM_STANDALONE_FILE");
Deno.env.delete("QVM_STANDALONE_FRESH");
const checked = new Set();

/** True when \`paths\` and every module they reach are as built; each file is checked once a run. */
async function intact(paths) {
  const todo = [];
  for (const stack = paths.map((path) => NAMES.indexOf(path)); stack.length > 0;) {
    const at = stack.pop();
    if (at < 0 || checked.has(at)) continue; // not in this build: its import fails as usual
    checked.add(at);
    todo.push(NAMES[at]);
    stack.push(...(DEPS[at] ?? []));
  }
  try {
    return todo.length === 0 || await verified(DIR, todo);
  } catch {
    return false;
  }
}

/** Has the standalone file unpack a fresh copy and run the command from it; exits with its code. */
async function runFresh() {
  if (FRESH || !SELF) {
    console.error(\`qvm: the files unpacked in \${DIR} do not match this build\`);
    Deno.exit(1);
  }
  const child = new Deno.Command("/bin/sh", {
    args: [SELF, ...Deno.args],
    env: { QVM_STANDALONE_FRESH: "1" },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  Deno.addSignalListener("SIGINT", () => {}); // the terminal sends it to the child too
  for (const signal of ["SIGTERM", "SIGHUP"]) {
    Deno.addSignalListener(signal, () => child.kill(signal));
  }
  Deno.exit((await child.status).code);
}

/** The split modules' loader checks each module (a command's, with all it reaches) first. */
async function check(file) {
  if (!(await intact([\`lib/\${file}\`]))) await runFresh();
}

let safe = false;
try {
  safe = privateDir(DIR);
} catch { /* a folder others may write */ }
const first = QUICK.includes(command)
  ? "lib/hot/quick.js"
  : HOT.includes(command)
  ? \`lib/hot/\${command}.js\`
  : "lib/main.js";
if (!safe || !(await intact(["deno", "lib/package.json", first]))) await runFresh();
${dispatchSource(LIB_URL, "check")}`;
}

/**
 * What each split module of a build (`{path: text}`, paths relative to lib/) loads: its static
 * and literal dynamic imports, and the modules it names for `lazyImport` (`"src/cloud/mod.ts"`).
 * A hot module (`hot/ls.js`) carries all it runs, so it has none.
 */
export function moduleDeps(files: Record<string, string>): Record<string, string[]> {
  const deps: Record<string, string[]> = {};
  for (const [path, text] of Object.entries(files)) {
    if (!path.endsWith(".js") || path.startsWith("hot/")) continue;
    const found = new Set<string>();
    const base = new URL(path, "file:///lib/");
    for (const [, spec] of text.matchAll(/\b(?:from|import)\s*\(?\s*["'](\.\.?\/[^"']+)["']/g)) {
      found.add(decodeURIComponent(new URL(spec, base).pathname.slice("/lib/".length)));
    }
    for (const [, lazy] of text.matchAll(/["'`](src\/[\w./-]+)\.ts["'`]/g)) found.add(`${lazy}.js`);
    found.delete(path);
    const known = [...found].filter((dep) => dep in files).sort();
    if (known.length > 0) deps[path] = known;
  }
  return deps;
}

/** `unpack.js`: run once by the fresh Deno, writes qvm's modules into its argument and checks all. */
function unpackerSource(
  version: string,
  parts: { packed: string; files: Record<string, [number, string]> },
): string {
  const { packed, files } = parts;
  return `// qvm ${version} standalone unpacker: built by src/dist/standalone.ts; do not edit.
/** qvm.mjs and the modules, as JSON \`{path: text}\`, gzipped and base64-encoded. */
const PACKED = "${packed}";
/** Every file's size in bytes and SHA-256, Deno's included. */
const FILES = ${JSON.stringify(files)};
${VERIFY_SOURCE}${UNPACK_SOURCE}
const dir = Deno.args[0];
writeFiles(dir, await unpack());
if (!(await verified(dir, Object.keys(FILES)))) {
  console.error(\`qvm: the files unpacked in \${dir} do not match this build\`);
  Deno.exit(1);
}
`;
}

/** Runs `argv` with its stdout into `path`; throws with its stderr when it fails. */
async function runInto(argv: string[], path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, createNew: true, mode: 0o644 });
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const [status, stderr] = await Promise.all([
    child.status,
    new Response(child.stderr).text(),
    child.stdout.pipeTo(file.writable),
  ]);
  if (!status.success) throw new Error(`${argv.join(" ")} failed: ${stderr.trim()}`);
}

/**
 * The runtime compressed, from `options.runtimeCache` when an earlier build compressed the same
 * Deno the same way (xz -6 of ~95 MB takes minutes on two cores), else compressed and kept there.
 */
async function compressedRuntime(options: StandaloneOptions, sha256: string): Promise<Uint8Array> {
  const { suffix, args } = COMPRESSIONS[options.compression];
  const cached = `${options.runtimeCache}/deno-${sha256.slice(0, 16)}-${options.level}.${suffix}`;
  try {
    return await Deno.readFile(cached);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await Deno.mkdir(options.runtimeCache, { recursive: true });
  const partial = `${cached}.partial-${Deno.pid}`;
  try {
    await runInto([options.compression, `-${options.level}`, ...args, options.runtime], partial);
    await Deno.rename(partial, cached);
  } finally {
    await Deno.remove(partial).catch(() => {});
  }
  return await Deno.readFile(cached);
}

/** Deno's version, as `deno --version` of `runtime` prints it. */
async function denoVersion(runtime: string): Promise<string> {
  const out = await new Deno.Command(runtime, { args: ["--version"], stdout: "piped" }).output();
  const version = new TextDecoder().decode(out.stdout).match(/^deno (\S+)/)?.[1];
  if (!out.success || !version) throw new Error(`${runtime} is not a Deno binary`);
  return version;
}

/** The Deno version package.json pins (the one `npm ci` puts in node_modules). */
async function pinnedDeno(): Promise<string | undefined> {
  const pkg = JSON.parse(await Deno.readTextFile(`${ROOT}package.json`));
  return pkg.devDependencies?.deno ?? pkg.dependencies?.deno;
}

/** A linux-x64 ELF executable, as the header promises. */
function isLinuxX64(bytes: Uint8Array): boolean {
  const elf = bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
  return elf && bytes[4] === 2 && bytes[18] === 0x3e && bytes[19] === 0;
}

/** Builds the standalone file (mode 0755, written atomically); returns its size in bytes. */
export async function buildStandalone(options: StandaloneOptions): Promise<number> {
  const text = await readBuild(options.from);
  const { files } = await unpackBuild(text);
  const version = text.match(/^\/\/ qvm (\S+):/m)?.[1] ?? "?";
  const runtime = await Deno.readFile(options.runtime);
  if (!isLinuxX64(runtime)) throw new Error(`${options.runtime} is not a linux-x64 executable`);
  const deno = await denoVersion(options.runtime);
  const pinned = await pinnedDeno();
  if (pinned && pinned !== deno) {
    throw new Error(`${options.runtime} is Deno ${deno}, package.json pins ${pinned}: run npm ci`);
  }
  const runtimeSha = await sha256Hex(runtime);

  const manifest: Record<string, [number, string]> = { deno: [runtime.length, runtimeSha] };
  for (const [path, source] of Object.entries(files)) {
    manifest[`lib/${path}`] = [new TextEncoder().encode(source).length, await sha256Hex(source)];
  }
  const launcher = launcherSource(version, { files: manifest, deps: moduleDeps(files) });
  const packedFiles: Record<string, string> = { "qvm.mjs": launcher };
  for (const [path, source] of Object.entries(files)) packedFiles[`lib/${path}`] = source;
  const unpacker = new TextEncoder().encode(unpackerSource(version, {
    packed: await gzipBase64(JSON.stringify(packedFiles)),
    files: {
      ...manifest,
      "qvm.mjs": [new TextEncoder().encode(launcher).length, await sha256Hex(launcher)],
    },
  }));
  const unpackerSha = await sha256Hex(unpacker);
  const compressed = await compressedRuntime(options, runtimeSha);
  const hash = (await sha256Hex(`${unpackerSha} ${runtimeSha}`)).slice(0, 16);

  // The header names the byte offsets of the parts after it, so its length decides them.
  let header = new Uint8Array();
  for (let length = 0; length === 0 || header.length !== length;) {
    length = header.length;
    header = new TextEncoder().encode(headerSource({
      version,
      deno,
      hash,
      compression: options.compression,
      unpacker: { start: length + 1, length: unpacker.length, sha256: unpackerSha },
      runtime: {
        start: length + unpacker.length + 1,
        length: compressed.length,
        sha256: runtimeSha,
      },
    }));
  }
  const slash = options.out.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(options.out.slice(0, slash), { recursive: true });
  const partial = `${options.out}.partial-${Deno.pid}`;
  const file = await Deno.open(partial, { write: true, create: true, truncate: true, mode: 0o755 });
  try {
    for (const part of [header, unpacker, compressed]) {
      for (let at = 0; at < part.length;) at += await file.write(part.subarray(at));
    }
  } finally {
    file.close();
  }
  await Deno.chmod(partial, 0o755);
  await Deno.rename(partial, options.out);
  return header.length + unpacker.length + compressed.length;
}

if (import.meta.main) {
  try {
    const options = parseStandaloneArgs(Deno.args);
    const size = await buildStandalone(options);
    const rel = options.out.startsWith(ROOT) ? options.out.slice(ROOT.length) : options.out;
    console.log(`built ${rel} (${(size / 1e6).toFixed(1)} MB, ${options.compression})`);
  } catch (err) {
    console.error(`standalone: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
