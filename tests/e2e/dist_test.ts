/**
 * The distributed form end to end: `dist/qvm` built by src/dist/bundle.ts, run as it is (it
 * unpacks its modules into a private cache folder) and installed by src/dist/install.ts into a
 * private prefix, then run as an executable (its shebang runs Deno) to define, start, query, stop
 * and remove a real VM; status, ls and info run from their own single modules there.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildDist, packBuild, unpackBuild } from "../../src/dist/bundle.ts";
import { DEFAULT_FROM, install, launcher, parseInstallArgs } from "../../src/dist/install.ts";
import { withEnv } from "../helpers/qvm.ts";
import { alive, guestConfig, pidsMentioning, WAIT_READY } from "../helpers/guest.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the installed `qvm` directly (no `deno run`), with only /usr/bin:/bin on PATH. */
async function runInstalled(qvm: string, args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(qvm, {
    args,
    env: { PATH: "/usr/bin:/bin", NO_COLOR: "1", ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) } as Run;
}

Deno.test("install reads the build where deno task bundle writes it, dist/qvm at the root", () => {
  const root = new URL("../../", import.meta.url).pathname;
  assert.equal(DEFAULT_FROM, `${root}dist/qvm`);
  const options = parseInstallArgs(["--prefix", "/opt/q"]);
  assert.deepEqual(options, { prefix: "/opt/q", from: DEFAULT_FROM, deno: Deno.execPath() });
  assert.equal(parseInstallArgs(["--from=/x/qvm"]).from, "/x/qvm");
  assert.throws(() => parseInstallArgs(["--prefix"]), /needs a value/);
  assert.throws(() => parseInstallArgs(["--nope", "1"]), /unknown option/);
});

Deno.test("the installed launcher names its Deno and build, and install refuses a file that is not a build", async () => {
  const text = launcher("/opt/deno/bin/deno", "/opt/qvm/lib/qvm/0123abcd", "1.2.3");
  const [shebang, comment] = text.split("\n");
  assert.equal(
    shebang,
    "#!/usr/bin/env -S DENO_NO_PACKAGE_JSON=1 /opt/deno/bin/deno run -A --quiet --no-config " +
      "--no-lock --no-code-cache --v8-flags=--no-enable-lazy-source-positions",
  );
  assert.match(comment, /^\/\/ qvm 1\.2\.3, installed by .*\/opt\/qvm\/lib\/qvm\/0123abcd\.$/);
  assert.match(text, /"file:\/\/\/opt\/qvm\/lib\/qvm\/0123abcd\/"/);
  assert.throws(() => launcher("/opt/my deno/deno", "/opt/qvm/lib", "1"), /spaces/);
  // Linux reads 255 bytes of a shebang line: a longer one would lose its last flags.
  assert.throws(() => launcher(`/opt/${"d".repeat(120)}/deno`, "/opt/qvm/lib", "1"), /too long/);
  await withEnv(async (env) => {
    const fake = await env.file("qvm", "#!/usr/bin/env -S deno run -A --quiet\nconsole.log(1);\n");
    await assert.rejects(
      install({ prefix: join(env.root, "prefix"), from: fake, deno: Deno.execPath() }),
      /not a qvm build/,
    );
    await assert.rejects(
      install({ prefix: join(env.root, "prefix"), from: join(env.root, "nope"), deno: "/x" }),
      /is missing: build it with deno task bundle/,
    );
  });
});

Deno.test("the installed single-file qvm starts, stops and removes a real VM", async () => {
  await withEnv(async (env) => {
    const built = join(env.root, "dist", "qvm");
    await buildDist(built);
    const qvm = await install({
      prefix: join(env.root, "prefix"),
      from: built,
      deno: Deno.execPath(),
    });
    assert.equal(Deno.statSync(qvm).mode! & 0o777, 0o755);
    const libs = [...Deno.readDirSync(join(env.root, "prefix", "lib", "qvm"))];
    assert.equal(libs.length, 1);
    const lib = join(env.root, "prefix", "lib", "qvm", libs[0].name);
    for (
      const file of ["main.js", "hot/status.js", "hot/ls.js", "hot/info.js", "src/cli/start.js"]
    ) {
      assert.ok(Deno.statSync(join(lib, file)).isFile, file);
    }
    // status and ls run from one module each, with what they may load inlined: never the cloud
    // module, the config module or the YAML parser (a guest left frozen reaches only the small
    // agent and status modules), which made every run parse ~250 KB instead of ~65 KB.
    for (const file of ["hot/status.js", "hot/ls.js"]) {
      const text = Deno.readTextFileSync(join(lib, file));
      assert.ok(text.includes('"src/vm/freeze.ts"'), `${file} inlines what a frozen guest needs`);
      for (const heavy of ['"src/cloud/mod.ts"', '"src/config/mod.ts"', "YAMLParseError"]) {
        assert.ok(!text.includes(heavy), `${file} carries ${heavy}`);
      }
      assert.ok(text.length < 120_000, `${file} is ${text.length} bytes`);
    }
    // Installing the same build again keeps its folder; the launcher is replaced.
    assert.equal(
      await install({ prefix: join(env.root, "prefix"), from: built, deno: Deno.execPath() }),
      qvm,
    );
    assert.deepEqual(
      [...Deno.readDirSync(join(env.root, "prefix", "lib", "qvm"))].map((e) => e.name),
      [libs[0].name],
    );
    const vars = {
      HOME: join(env.root, "home"),
      XDG_CACHE_HOME: join(env.root, "cache"),
      QVM_DATA_DIR: env.dataDir,
      QVM_RUNTIME_DIR: env.runtimeDir,
    };
    const ok = async (args: string[]) => {
      const result = await runInstalled(qvm, args, vars);
      assert.equal(result.code, 0, `qvm ${args.join(" ")}: ${result.stderr}`);
      return result.stdout;
    };

    assert.match(await ok(["--version"]), /^qvm \d+\.\d+\.\d+/);
    // The installed form reads its modules from lib/ and unpacks nothing; dist/qvm run as it is
    // unpacks them once into a private cache folder.
    assert.throws(() => Deno.statSync(join(env.root, "cache", "qvm")), Deno.errors.NotFound);
    await Deno.chmod(built, 0o755);
    const direct = await runInstalled(built, ["--version"], vars);
    assert.equal(direct.code, 127, "dist/qvm names plain 'deno', not on this PATH");
    const withDeno = await runInstalled(built, ["--version"], {
      ...vars,
      PATH: `${Deno.execPath().replace(/\/[^/]*$/, "")}:/usr/bin:/bin`,
    });
    assert.match(withDeno.stdout, /^qvm \d+\.\d+\.\d+/, withDeno.stderr);
    const unpacked = [...Deno.readDirSync(join(env.root, "cache", "qvm"))];
    assert.equal(unpacked.length, 1);
    assert.equal(Deno.statSync(join(env.root, "cache", "qvm")).mode! & 0o777, 0o700);

    const id = (await ok(["add", await guestConfig(env, { name: "d1" })])).trim();
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.match(await ok(["start", "d1", ...WAIT_READY]), /started d1 \(pid \d+\)/);
    const running = JSON.parse(await ok(["status", "d1", "--json"]));
    assert.equal(running.status, "running");
    assert.ok(alive(running.pid));
    const listed = JSON.parse(await ok(["ls", "--json"]));
    assert.deepEqual(listed.map((v: { name: string; status: string }) => [v.name, v.status]), [
      ["d1", "running"],
    ]);
    assert.match(await ok(["info", id]), /^name: d1$/m);
    // status --json of a VM with port forwards: the cloud part comes from status's own module.
    const cloudy = await env.file("d2.yaml", "name: d2\nnetwork:\n  ports: ['auto:22']\n");
    await ok(["add", cloudy]);
    const d2 = JSON.parse(await ok(["--data-dir", env.dataDir, "status", "--json", "d2"]));
    assert.deepEqual(d2.forwards, [{
      address: "127.0.0.1",
      host: "auto",
      guest: 22,
      proto: "tcp",
    }]);
    assert.equal(d2.addresses, null);
    await ok(["rm", "d2"]);

    const stop = JSON.parse(await ok(["stop", "d1", "--json", "--timeout", "30"]));
    assert.equal(stop.step, "acpi");
    assert.ok(!alive(running.pid));
    assert.equal(JSON.parse(await ok(["status", "d1", "--json"])).status, "stopped");
    assert.deepEqual(pidsMentioning(env.root), []);

    const missing = await runInstalled(qvm, ["status", "nope"], vars);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /^qvm: no VM with id or name 'nope'\n$/);
    await ok(["rm", "d1"]);
    assert.deepEqual(JSON.parse(await ok(["ls", "--json"])), []);
  });
});

/** One real build per run of this file, shared by the install tests below (its text). */
let built: Promise<string> | undefined;
function buildOnce(): Promise<string> {
  built ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "qvm-build-" });
    try {
      await buildDist(join(dir, "qvm"));
      return await Deno.readTextFile(join(dir, "qvm"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  })();
  return built;
}

/** Runs `src/dist/install.ts` in its own process. */
function installProcess(prefix: string, from: string) {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../src/dist/install.ts", import.meta.url).pathname,
      "--prefix",
      prefix,
      "--from",
      from,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
}

Deno.test("install: odd prefixes, a damaged build repaired, concurrent installs, earlier builds kept", async () => {
  const root = await Deno.makeTempDir({ prefix: "qvm-install-" });
  try {
    const text = await buildOnce();
    const { files } = await unpackBuild(text);
    // Builds that differ from the real one by a comment: each gets a hash of its own.
    const variants: string[] = [];
    for (let i = 0; i < 4; i++) {
      const path = join(root, `qvm-${i}`);
      await Deno.writeTextFile(
        path,
        await packBuild({ ...files, "main.js": `${files["main.js"]}\n// ${i}\n` }),
      );
      variants.push(path);
    }
    const dirs = ["--data-dir", join(root, "data"), "--runtime-dir", join(root, "run")];
    const works = async (qvm: string) => {
      const ls = await runInstalled(qvm, [...dirs, "ls", "--json"], {});
      assert.equal(ls.code, 0, ls.stderr);
      assert.equal(ls.stdout, "[]\n");
      const missing = await runInstalled(qvm, [...dirs, "status", "nope"], {});
      assert.equal(missing.stderr, "qvm: no VM with id or name 'nope'\n");
      const help = await runInstalled(qvm, ["stop", "--help"], {});
      assert.match(help.stdout, /^Usage: qvm stop/m, help.stderr);
    };

    // A prefix whose path a URL would read otherwise: %41 is not "A", # is no fragment.
    const odd = join(root, "pre fix%41#x");
    const qvm = await install({ prefix: odd, from: variants[0], deno: Deno.execPath() });
    await Deno.mkdir(join(root, "data"), { mode: 0o700 });
    await Deno.mkdir(join(root, "run"), { mode: 0o700 });
    await works(qvm);

    // A file lost from the installed build is put back by installing the same build again.
    const lib = join(odd, "lib", "qvm");
    const [hash] = [...Deno.readDirSync(lib)].map((e) => e.name);
    await Deno.remove(join(lib, hash, "hot", "status.js"));
    await install({ prefix: odd, from: variants[0], deno: Deno.execPath() });
    await works(qvm);

    // Two installs at once, of the same build and of different builds: both succeed, qvm works.
    for (const pair of [[variants[1], variants[1]], [variants[2], variants[3]]]) {
      const prefix = await Deno.makeTempDir({ dir: root, prefix: "concurrent-" });
      const outs = await Promise.all(pair.map((from) => installProcess(prefix, from)));
      for (const out of outs) assert.ok(out.success, new TextDecoder().decode(out.stderr));
      await works(join(prefix, "bin", "qvm"));
    }

    // Upgrades keep the two builds before the current one, for qvm processes still running.
    const kept = join(root, "kept");
    for (const from of variants) await install({ prefix: kept, from, deno: Deno.execPath() });
    const left = [...Deno.readDirSync(join(kept, "lib", "qvm"))].map((e) => e.name).sort();
    const hashes = await Promise.all(
      variants.map(async (v) => (await Deno.readTextFile(v)).match(/^const HASH = "(\w+)";$/m)![1]),
    );
    assert.deepEqual(left, hashes.slice(1).sort());
    await works(join(kept, "bin", "qvm"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("dist/qvm runs only its own modules: an edited or truncated one is unpacked again; no usable cache means a temporary folder", async () => {
  const root = await Deno.makeTempDir({ prefix: "qvm-distcache-" });
  try {
    const qvm = join(root, "qvm");
    await Deno.writeTextFile(
      qvm,
      await buildOnce(),
    );
    await Deno.chmod(qvm, 0o755);
    const vars = {
      PATH: `${Deno.execPath().replace(/\/[^/]*$/, "")}:/usr/bin:/bin`,
      HOME: join(root, "home"),
      XDG_CACHE_HOME: join(root, "cache"),
    };
    const dirs = ["--data-dir", join(root, "data"), "--runtime-dir", join(root, "run")];
    await Deno.mkdir(join(root, "data"), { mode: 0o700 });
    await Deno.mkdir(join(root, "run"), { mode: 0o700 });
    const run = (args: string[], env: Record<string, string> = {}) =>
      runInstalled(qvm, args, { ...vars, ...env });
    const version = await run(["--version"]);
    assert.match(version.stdout, /^qvm \d+\.\d+\.\d+/, version.stderr);
    const [cache] = [...Deno.readDirSync(join(root, "cache", "qvm"))].map((e) =>
      join(root, "cache", "qvm", e.name)
    );
    assert.match(cache, /dist-[0-9a-f]{16}$/);

    // An edited hot module (status runs from hot/status.js alone) is replaced before it runs.
    const hot = join(cache, "hot", "status.js");
    const original = await Deno.readTextFile(hot);
    await Deno.writeTextFile(hot, `console.log("ALTERED");\n${original}`);
    const status = await run([...dirs, "status", "nope"]);
    assert.equal(status.code, 3, status.stderr);
    assert.doesNotMatch(status.stdout, /ALTERED/);
    assert.equal(await Deno.readTextFile(hot), original);

    // A truncated or removed module of the split build: unpacked again, no stack trace.
    await Deno.writeTextFile(join(cache, "main.js"), "");
    await Deno.remove(join(cache, "src", "cli", "start.js"));
    const help = await run(["start", "--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: qvm start/m);
    assert.ok(Deno.statSync(join(cache, "main.js")).size > 0);
    assert.ok(Deno.statSync(join(cache, "src", "cli", "start.js")).isFile);

    // A cache that cannot be written (its folder is under a file, a home no one may write) or is
    // not private: every command still runs, from a temporary folder that is gone afterwards.
    const before = new Set([...Deno.readDirSync("/tmp")].map((e) => e.name));
    const unusable: Record<string, string>[] = [
      { XDG_CACHE_HOME: join(qvm, "cache") },
      { HOME: "/proc", XDG_CACHE_HOME: "" }, // no one may write there, root neither
    ];
    for (const env of unusable) {
      const again = await run(["--version"], env);
      assert.match(again.stdout, /^qvm \d+\.\d+\.\d+/, again.stderr);
      const ls = await run([...dirs, "ls", "--json"], env);
      assert.equal(ls.stdout, "[]\n", ls.stderr);
    }
    await Deno.chmod(cache, 0o755);
    const open = await run([...dirs, "ls", "--json"]);
    assert.equal(open.stdout, "[]\n", open.stderr);
    const left = [...Deno.readDirSync("/tmp")].filter((e) =>
      e.name.startsWith("qvm-dist-") && !before.has(e.name)
    );
    assert.deepEqual(left, [], "a temporary folder was left behind");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
