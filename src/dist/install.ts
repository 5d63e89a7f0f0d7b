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

/** `path` as a `file:` URL. */
function fileUrl(path: string): string {
  const url = new URL("file:///");
  url.pathname = path;
  return url.href;
}

/** The installed `bin/qvm`: the shebang pointed at `deno`, then the router into the build in `lib`. */
export function launcher(deno: string, lib: string, version: string): string {
  if (/\s/.test(deno)) throw new Error(`the path of Deno must not contain spaces: ${deno}`);
  return [
    `#!/usr/bin/env -S DENO_NO_PACKAGE_JSON=1 ${deno} ${DENO_FLAGS}`,
    `// qvm ${version}, installed by src/dist/install.ts; its modules are in ${lib}.`,
    routeSource(JSON.stringify(`${fileUrl(lib)}/`)),
  ].join("\n");
}

/** Writes `files` into the folder `dir` (atomically, by rename), unless that build is there. */
function writeBuild(dir: string, files: Record<string, string>): void {
  try {
    if (Deno.statSync(`${dir}/main.js`).isFile) return;
    Deno.removeSync(dir, { recursive: true }); // a build left half-written by hand
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const parent = dir.slice(0, dir.lastIndexOf("/"));
  Deno.mkdirSync(parent, { recursive: true });
  const tmp = Deno.makeTempDirSync({ dir: parent, prefix: ".partial-" });
  try {
    const all = { ...files, "package.json": '{"type":"module"}\n' };
    for (const [path, text] of Object.entries(all)) {
      const slash = path.lastIndexOf("/");
      if (slash > 0) Deno.mkdirSync(`${tmp}/${path.slice(0, slash)}`, { recursive: true });
      Deno.writeTextFileSync(`${tmp}/${path}`, text, { createNew: true, mode: 0o644 });
    }
    Deno.chmodSync(tmp, 0o755);
    Deno.renameSync(tmp, dir);
  } catch (err) {
    Deno.removeSync(tmp, { recursive: true });
    throw err;
  }
}

/**
 * Installs `from` as `prefix/bin/qvm` (mode 0755, replaced atomically) with its modules in
 * `prefix/lib/qvm/<hash>/`; earlier builds there are removed. Returns the path of `bin/qvm`.
 */
export async function install(options: InstallOptions): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(options.from);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(`${options.from} is missing: build it with deno task bundle`);
    }
    throw err;
  }
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
  for (const entry of Deno.readDirSync(root)) {
    // Earlier builds (and partial writes): a qvm already running keeps what it has loaded.
    if (entry.name !== hash && entry.isDirectory) {
      await Deno.remove(`${root}/${entry.name}`, { recursive: true });
    }
  }
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
