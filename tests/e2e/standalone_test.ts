/**
 * `dist/qvm-standalone`, built by src/dist/standalone.ts: copied alone into an empty folder and run
 * with a PATH that holds neither `deno` nor `node`, it unpacks Deno and qvm's modules once into a
 * private cache folder, reuses it, notices a changed file there and unpacks again, and runs from a
 * temporary folder when there is no usable cache.
 *
 * The builds compress Deno with level 1 (quick to build; a warm run never reads it); the compressed
 * runtime is kept in dist/.runtime, so later runs of this file do not compress again.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildDist } from "../../src/dist/bundle.ts";
import {
  buildStandalone,
  defaultStandaloneOptions,
  parseStandaloneArgs,
} from "../../src/dist/standalone.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `file` directly (its `#!/bin/sh` header), with only `env` in its environment. */
async function run(file: string, args: string[], env: Record<string, string>): Promise<Run> {
  const out = await new Deno.Command(file, {
    args,
    env: { NO_COLOR: "1", ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** A folder of links to every program in /usr/bin but those named in `without`. */
async function binWithout(dir: string, without: RegExp): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  for (const entry of Deno.readDirSync("/usr/bin")) {
    if (!without.test(entry.name)) {
      await Deno.symlink(`/usr/bin/${entry.name}`, join(dir, entry.name));
    }
  }
  return dir;
}

const NO_DENO_NOR_NODE = /^(deno|node|nodejs|npm|npx|corepack)$/;

/** Builds `dist/qvm` and a standalone file from it into `dir`; returns the standalone's path. */
async function build(dir: string, compression: "xz" | "gzip"): Promise<string> {
  await buildDist(join(dir, "qvm"));
  const out = join(dir, `qvm-standalone-${compression}`);
  await buildStandalone({
    ...defaultStandaloneOptions(),
    out,
    from: join(dir, "qvm"),
    compression,
    level: 1,
  });
  return out;
}

/** The folder inside `cache` (an XDG cache home) that the standalone file unpacked into. */
function unpacked(cache: string): string {
  const names = [...Deno.readDirSync(join(cache, "qvm"))].map((e) => e.name);
  assert.equal(names.length, 1, `one folder in the cache, not ${names}`);
  assert.match(names[0], /^standalone-[0-9a-f]{16}$/);
  return join(cache, "qvm", names[0]);
}

Deno.test("standalone build options: dist/qvm to dist/qvm-standalone with xz, --gzip", () => {
  const root = new URL("../../", import.meta.url).pathname;
  const options = parseStandaloneArgs([]);
  assert.equal(options.out, `${root}dist/qvm-standalone`);
  assert.equal(options.from, `${root}dist/qvm`);
  assert.equal(options.runtime, `${root}node_modules/.bin/deno`);
  assert.equal(options.compression, "xz");
  assert.equal(parseStandaloneArgs(["--gzip", "--out=/x/q"]).compression, "gzip");
  assert.equal(parseStandaloneArgs(["--out", "/x/q"]).out, "/x/q");
  assert.throws(() => parseStandaloneArgs(["--out"]), /needs a value/);
  assert.throws(() => parseStandaloneArgs(["--nope", "1"]), /unknown option/);
});

Deno.test("dist/qvm-standalone alone in a folder, no deno or node on PATH: unpacks once, runs qvm, unpacks again what was changed", async (t) => {
  const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "qvm-alone-" });
  try {
    const built = await build(join(root, "build"), "xz");
    const folder = join(root, "empty");
    await Deno.mkdir(folder);
    const qvm = join(folder, "qvm-standalone");
    await Deno.copyFile(built, qvm);
    await Deno.chmod(qvm, 0o755);
    const cache = join(root, "cache");
    const tmp = join(root, "tmp");
    await Deno.mkdir(tmp);
    const env = {
      PATH: await binWithout(join(root, "bin"), NO_DENO_NOR_NODE),
      HOME: join(root, "home"),
      XDG_CACHE_HOME: cache,
      TMPDIR: tmp,
      QVM_DATA_DIR: join(root, "data"),
      QVM_RUNTIME_DIR: join(root, "run"),
    };
    const none = await run("/bin/sh", ["-c", "command -v deno || command -v node"], env);
    assert.equal(none.stdout, "", "deno or node is on the test's PATH");
    const ok = async (args: string[], extra: Record<string, string> = {}) => {
      const result = await run(qvm, args, { ...env, ...extra });
      assert.equal(result.code, 0, `qvm ${args.join(" ")}: ${result.stderr}`);
      assert.equal(result.stderr, "");
      return result.stdout;
    };
    let dir = "";
    const inode = (path: string) => Deno.lstatSync(join(dir, path)).ino;

    await t.step("the first run unpacks into a private cache folder", async () => {
      assert.match(await ok(["--version"]), /^qvm \d+\.\d+\.\d+/);
      dir = unpacked(cache);
      assert.equal(Deno.statSync(join(cache, "qvm")).mode! & 0o777, 0o700);
      assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
      for (const file of ["deno", "qvm.mjs", ".verified", "lib/main.js", "lib/hot/ls.js"]) {
        assert.ok(Deno.lstatSync(join(dir, file)).isFile, file);
      }
      assert.deepEqual([...Deno.readDirSync(folder)].map((e) => e.name), ["qvm-standalone"]);
    });

    await t.step("a second run reuses the cache; add --empty and ls --json work", async () => {
      const before = { deno: inode("deno"), ls: inode("lib/hot/ls.js"), stamp: inode(".verified") };
      const id = (await ok(["add", "--empty", "--name", "alone"])).trim();
      assert.match(id, /^[0-9a-f-]{36}$/);
      const listed = JSON.parse(await ok(["ls", "--json"]));
      assert.deepEqual(listed.map((v: { id: string; name: string }) => [v.id, v.name]), [
        [id, "alone"],
      ]);
      assert.deepEqual(
        { deno: inode("deno"), ls: inode("lib/hot/ls.js"), stamp: inode(".verified") },
        before,
      );
      assert.equal(unpacked(cache), dir);
    });

    await t.step("an edited module is noticed before it runs, and unpacked again", async () => {
      // ls --json runs the quick routes' module; the table, ls's own.
      for (const [module, args] of [["quick.js", ["ls", "--json"]], ["ls.js", ["ls"]]]) {
        const hot = join(dir, "lib", "hot", module as string);
        const original = await Deno.readTextFile(hot);
        await Deno.writeTextFile(hot, `console.log("ALTERED");\n${original}`);
        const listed = await ok(args as string[]);
        assert.doesNotMatch(listed, /ALTERED/);
        if (module === "quick.js") assert.equal(JSON.parse(listed).length, 1);
        assert.equal(await Deno.readTextFile(hot), original);
        assert.equal(unpacked(cache), dir);
      }
    });

    await t.step("a changed Deno binary is noticed and unpacked again", async () => {
      const deno = join(dir, "deno");
      const size = Deno.statSync(deno).size;
      await Deno.writeFile(deno, new Uint8Array([0]), { append: true });
      assert.match(await ok(["--version"]), /^qvm \d+\.\d+\.\d+/);
      assert.equal(Deno.statSync(deno).size, size);
    });

    await t.step(
      "a run checks the modules it loads, no more: a command's when it runs",
      async () => {
        const add = join(dir, "lib", "src", "cli", "add.js");
        const config = join(dir, "lib", "src", "config", "mod.js");
        const originals = [await Deno.readTextFile(add), await Deno.readTextFile(config)];
        await Deno.writeTextFile(add, `console.log("ALTERED");\n${originals[0]}`);
        await Deno.writeTextFile(config, `console.log("ALTERED");\n${originals[1]}`);
        // --version loads main.js and its imports only: the cache stays as it is.
        assert.match(await ok(["--version"]), /^qvm \d+\.\d+\.\d+\n$/);
        assert.match(await Deno.readTextFile(add), /^console\.log\("ALTERED"\)/);
        // add's module, and the config module it can load lazily, are checked before it runs.
        assert.doesNotMatch(await ok(["add", "--help"]), /ALTERED/);
        assert.equal(await Deno.readTextFile(add), originals[0]);
        assert.equal(await Deno.readTextFile(config), originals[1]);
        // A module main.js imports, removed, is noticed before anything runs.
        const main = await Deno.readTextFile(join(dir, "lib", "main.js"));
        const chunk = main.match(/from "\.\/(chunk-\w+\.js)"/)![1];
        await Deno.remove(join(dir, "lib", chunk));
        assert.match(await ok(["--version"]), /^qvm \d+\.\d+\.\d+\n$/);
        assert.ok(Deno.lstatSync(join(dir, "lib", chunk)).isFile);
        assert.equal(unpacked(cache), dir);
      },
    );

    await t.step("a cache folder others may write is replaced by a private one", async () => {
      await Deno.chmod(dir, 0o777);
      const missing = await run(qvm, ["status", "nope"], env);
      assert.equal(missing.code, 3, missing.stderr);
      assert.equal(missing.stderr, "qvm: no VM with id or name 'nope'\n");
      assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
      assert.deepEqual([...Deno.readDirSync(join(cache, "qvm"))].map((e) => e.name), [
        dir.slice(dir.lastIndexOf("/") + 1),
      ]);
    });

    await t.step("no usable cache: a temporary folder, removed when qvm ends", async () => {
      const listed = await ok(["ls", "--json"], { HOME: "/proc", XDG_CACHE_HOME: "" });
      assert.equal(JSON.parse(listed).length, 1);
      assert.deepEqual([...Deno.readDirSync(tmp)], [], "a temporary folder was left behind");
    });

    await t.step("two first runs at once both work and leave one folder", async () => {
      const other = join(root, "cache-concurrent");
      const runs = await Promise.all(
        [0, 1].map(() => run(qvm, ["ls", "--json"], { ...env, XDG_CACHE_HOME: other })),
      );
      for (const result of runs) {
        assert.equal(result.code, 0, result.stderr);
        assert.equal(JSON.parse(result.stdout).length, 1);
      }
      unpacked(other);
    });

    await t.step("without xz the first run says what to install", async () => {
      const result = await run(qvm, ["--version"], {
        ...env,
        PATH: await binWithout(join(root, "bin-no-xz"), /^(deno|node|nodejs|npm|npx|corepack|xz)$/),
        XDG_CACHE_HOME: join(root, "cache-2"),
      });
      assert.equal(result.code, 1);
      assert.match(
        result.stderr,
        /^qvm: the first run unpacks Deno with xz, which is not installed/,
      );
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a standalone file built with --gzip unpacks where there is no xz", async () => {
  const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "qvm-alone-gz-" });
  try {
    const qvm = await build(join(root, "build"), "gzip");
    const result = await run(qvm, ["--version"], {
      PATH: await binWithout(join(root, "bin"), /^(deno|node|nodejs|npm|npx|corepack|xz)$/),
      HOME: join(root, "home"),
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^qvm \d+\.\d+\.\d+/);
    assert.ok(Deno.lstatSync(join(unpacked(join(root, "home", ".cache")), "deno")).isFile);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
