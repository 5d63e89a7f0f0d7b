/**
 * `deno run -A src/dist/install.ts [--prefix DIR] [--from dist/qvm]`: installs the single-file
 * qvm as `DIR/bin/qvm` (default `~/.local/bin/qvm`). The modules packed inside `dist/qvm` are
 * unpacked here, once, into `DIR/lib/qvm/<build hash>/`, and `bin/qvm` is a few lines that import
 * them: a run of the installed `qvm` reads no packed payload and unpacks nothing, so it loads
 * what running from source loads, as plain JavaScript. Its shebang names the Deno that runs this
 * script by its absolute path, so `qvm` works on a machine whose only Deno is the one npm put in
 * `node_modules`. Build `dist/qvm` first (`deno task bundle`; `deno task install` does).
 */
import { DENO_FLAGS, routeSource, SHEBANG, unpackBuild } from "./bundle.ts";

/** Where to install from and to. */
export interface InstallOptions {
  /** The folder whose `bin/` receives `qvm` (and `lib/qvm/` its modules). */
  prefix: string;
  /** The built single file. */
  from: string;
  /** The Deno binary the shebang runs. */
  deno: string;
}

/** `path` as a `file:` URL, every character a URL would read otherwise (`%`, `#`, `?`) escaped. */
export function fileUrl(path: string): string {
  return `file://${path.split("/").map(encodeURIComponent).join("/")}`;
}

/** How many earlier builds an install keeps, for qvm processes still running from them. */
const KEPT_BUILDS = 2;
/** A partial write older than this was left by an install that died. */
const STALE_PARTIAL_MS = 10 * 60 * 1000;

/** The installed `bin/qvm`: the shebang pointed at `deno`, then the router into the build in `lib`. */
export function launcher(deno: string, lib: string, version: string): string {
  if (/\s/.test(deno)) throw new Error(`the path of Deno must not contain spaces: ${deno}`);
  const shebang = `#!/usr/bin/env -S DENO_NO_PACKAGE_JSON=1 ${deno} ${DENO_FLAGS}`;
  // Linux reads at most 255 bytes of a shebang line: a longer one would lose its last flags.
  if (new TextEncoder().encode(shebang).length > 255) {
    throw new Error(`the path of Deno is too long for a shebang line (255 bytes): ${deno}`);
  }
  return [
    shebang,
    `// qvm ${version}, installed by src/dist/install.ts; its modules are in ${lib}.`,
    routeSource(JSON.stringify(`${fileUrl(lib)}/`)),
  ].join("\n");
}

/** True when `dir` holds exactly `files` (a build that is complete and undamaged). */
function holdsBuild(dir: string, files: Record<string, string>): boolean {
  try {
    return Object.entries(files).every(([path, text]) =>
      Deno.readTextFileSync(`${dir}/${path}`) === text
    );
  } catch {
    return false;
  }
}

/**
 * Makes `dir` hold `files`: written into a partial folder, then renamed into place. A complete
 * build already there (written by an earlier or a concurrent install) is kept; a damaged one is
 * replaced.
 */
function writeBuild(dir: string, files: Record<string, string>): void {
  if (holdsBuild(dir, files)) return;
  const parent = dir.slice(0, dir.lastIndexOf("/"));
  Deno.mkdirSync(parent, { recursive: true });
  const tmp = Deno.makeTempDirSync({ dir: parent, prefix: ".partial-" });
  try {
    for (const [path, text] of Object.entries(files)) {
      const slash = path.lastIndexOf("/");
      if (slash > 0) Deno.mkdirSync(`${tmp}/${path.slice(0, slash)}`, { recursive: true });
      Deno.writeTextFileSync(`${tmp}/${path}`, text, { createNew: true, mode: 0o644 });
    }
    Deno.chmodSync(tmp, 0o755);
    try {
      Deno.renameSync(tmp, dir);
      return;
    } catch (err) {
      if (holdsBuild(dir, files)) return; // a concurrent install of the same build won
      if (!(err instanceof Deno.errors.AlreadyExists) && !/os error 39/.test(String(err))) {
        throw err;
      }
    }
    // A damaged build is in the way: move it aside, then put the new one in its place.
    const old = `${tmp}.old`;
    Deno.renameSync(dir, old);
    Deno.renameSync(tmp, dir);
    Deno.removeSync(old, { recursive: true });
  } finally {
    try {
      Deno.removeSync(tmp, { recursive: true });
    } catch { /* renamed into place */ }
  }
}

/**
 * Removes what earlier installs left under `root` but `keep` and the `KEPT_BUILDS` newest other
 * builds (a qvm still running from one loads its modules lazily), and partial writes old enough
 * to be an install that died.
 */
function pruneBuilds(root: string, keep: string): void {
  const builds: { name: string; mtime: number }[] = [];
  for (const entry of Deno.readDirSync(root)) {
    if (!entry.isDirectory || entry.name === keep) continue;
    let mtime = 0;
    try {
      mtime = Deno.statSync(`${root}/${entry.name}`).mtime?.getTime() ?? 0;
    } catch { /* gone meanwhile */ }
    if (entry.name.startsWith(".partial-")) {
      if (Date.now() - mtime > STALE_PARTIAL_MS) {
        Deno.removeSync(`${root}/${entry.name}`, { recursive: true });
      }
    } else if (/^[0-9a-f]{16}$/.test(entry.name)) {
      builds.push({ name: entry.name, mtime });
    }
  }
  builds.sort((a, b) => b.mtime - a.mtime);
  for (const { name } of builds.slice(KEPT_BUILDS)) {
    try {
      Deno.removeSync(`${root}/${name}`, { recursive: true });
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
}

/** The text of the build at `from` (`dist/qvm`); a missing one says how to make it. */
export async function readBuild(from: string): Promise<string> {
  try {
    return await Deno.readTextFile(from);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(`${from} is missing: build it with deno task bundle`);
    }
    throw err;
  }
}

/**
 * Installs `from` as `prefix/bin/qvm` (mode 0755, replaced atomically) with its modules in
 * `prefix/lib/qvm/<hash>/`; of earlier builds there the newest `KEPT_BUILDS` stay. Returns the
 * path of `bin/qvm`.
 */
export async function install(options: InstallOptions): Promise<string> {
  const text = await readBuild(options.from);
  if (!text.startsWith(`${SHEBANG}\n`)) {
    throw new Error("not a qvm build (its first line is not qvm's shebang): run deno task bundle");
  }
  const { hash, files } = await unpackBuild(text);
  const version = text.match(/^\/\/ qvm (\S+):/m)?.[1] ?? "?";
  const prefix = options.prefix.replace(/\/+$/, "") || "/";
  const root = `${prefix.startsWith("/") ? prefix : `${Deno.cwd()}/${prefix}`}/lib/qvm`;
  const lib = `${root}/${hash}`;
  const script = launcher(options.deno, lib, version);
  writeBuild(lib, files);
  const bin = `${prefix}/bin`;
  await Deno.mkdir(bin, { recursive: true });
  const target = `${bin}/qvm`;
  const partial = `${target}.partial-${Deno.pid}`;
  await Deno.writeTextFile(partial, script, { mode: 0o755 });
  await Deno.chmod(partial, 0o755);
  await Deno.rename(partial, target);
  pruneBuilds(root, hash);
  return target;
}

/** Where `deno task bundle` writes the build: `dist/qvm` at the repository's root. */
export const DEFAULT_FROM = new URL("../../dist/qvm", import.meta.url).pathname;

/** The options of `install.ts`'s command line (defaults: `~/.local`, `DEFAULT_FROM`, this Deno). */
export function parseInstallArgs(argv: string[]): InstallOptions {
  const options: InstallOptions = {
    prefix: `${Deno.env.get("HOME") ?? "/root"}/.local`,
    from: DEFAULT_FROM,
    deno: Deno.execPath(),
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = inline ?? argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--prefix") options.prefix = value;
    else if (flag === "--from") options.from = value;
    else throw new Error(`unknown option '${flag}' (use --prefix DIR, --from FILE)`);
  }
  return options;
}

if (import.meta.main) {
  try {
    const target = await install(parseInstallArgs(Deno.args));
    const dir = target.slice(0, target.lastIndexOf("/"));
    const onPath = (Deno.env.get("PATH") ?? "").split(":").includes(dir);
    console.log(`installed ${target}${onPath ? "" : ` (add ${dir} to PATH)`}`);
  } catch (err) {
    console.error(`install: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
