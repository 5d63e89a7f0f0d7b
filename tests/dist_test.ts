/**
 * The distributed form end to end: `dist/qvm` built by src/dist/bundle.ts, run as it is (it
 * unpacks its modules into a private cache folder) and installed by src/dist/install.ts into a
 * private prefix, then run as an executable (its shebang runs Deno) to define, start, query, stop
 * and remove a real VM; status, ls and info run from their own single modules there.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildDist } from "../src/dist/bundle.ts";
import { DEFAULT_FROM, install, launcher, parseInstallArgs } from "../src/dist/install.ts";
import { withEnv } from "./helpers/qvm.ts";
import { alive, guestConfig, pidsMentioning, WAIT_READY } from "./helpers/guest.ts";

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
  const root = new URL("../", import.meta.url).pathname;
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
      "--no-lock --no-code-cache",
  );
  assert.match(comment, /^\/\/ qvm 1\.2\.3, installed by .*\/opt\/qvm\/lib\/qvm\/0123abcd\.$/);
  assert.match(text, /"file:\/\/\/opt\/qvm\/lib\/qvm\/0123abcd\/"/);
  assert.throws(() => launcher("/opt/my deno/deno", "/opt/qvm/lib", "1"), /spaces/);
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
