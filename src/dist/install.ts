/**
 * `deno run -A tools/install.ts [--prefix DIR] [--from dist/qvm]`: installs the single-file qvm
 * as `DIR/bin/qvm` (default `~/.local/bin/qvm`). The installed file's shebang names the Deno that
 * runs this script by its absolute path, so `qvm` works on a machine whose only Deno is the one
 * npm put in `node_modules`. Build `dist/qvm` first (`deno task bundle`; `deno task install` does).
 */
import { SHEBANG } from "./bundle.ts";

/** Where to install from and to. */
export interface InstallOptions {
  /** The folder whose `bin/` receives `qvm`. */
  prefix: string;
  /** The built single file. */
  from: string;
  /** The Deno binary the shebang runs. */
  deno: string;
}

/** The text of `dist/qvm` with its shebang pointed at `deno`. */
export function withShebang(text: string, deno: string): string {
  if (!text.startsWith(`${SHEBANG}\n`)) {
    throw new Error("not a qvm build (its first line is not qvm's shebang): run deno task bundle");
  }
  if (/\s/.test(deno)) throw new Error(`the path of Deno must not contain spaces: ${deno}`);
  return `#!/usr/bin/env -S ${deno} run -A --quiet\n${text.slice(SHEBANG.length + 1)}`;
}

/** Installs `from` as `prefix/bin/qvm` (mode 0755, replaced atomically); returns that path. */
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
  const bin = `${options.prefix.replace(/\/+$/, "")}/bin`;
  await Deno.mkdir(bin, { recursive: true });
  const target = `${bin}/qvm`;
  const partial = `${target}.partial-${Deno.pid}`;
  await Deno.writeTextFile(partial, withShebang(text, options.deno), { mode: 0o755 });
  await Deno.chmod(partial, 0o755);
  await Deno.rename(partial, target);
  return target;
}

function parse(argv: string[]): InstallOptions {
  const options: InstallOptions = {
    prefix: `${Deno.env.get("HOME") ?? "/root"}/.local`,
    from: new URL("../dist/qvm", import.meta.url).pathname,
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
    const target = await install(parse(Deno.args));
    const dir = target.slice(0, target.lastIndexOf("/"));
    const onPath = (Deno.env.get("PATH") ?? "").split(":").includes(dir);
    console.log(`installed ${target}${onPath ? "" : ` (add ${dir} to PATH)`}`);
  } catch (err) {
    console.error(`install: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
