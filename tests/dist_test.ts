/**
 * The distributed form end to end: `dist/qvm` built by src/dist/bundle.ts, installed by
 * src/dist/install.ts into a private prefix, then run as an executable (its shebang runs Deno) to
 * define, start, query, stop and remove a real VM.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildDist } from "../src/dist/bundle.ts";
import { install, withShebang } from "../src/dist/install.ts";
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

Deno.test("install points the shebang at a Deno binary and refuses a file that is not a build", () => {
  const built = "#!/usr/bin/env -S deno run -A --quiet\nconsole.log(1);\n";
  assert.equal(
    withShebang(built, "/opt/deno/bin/deno"),
    "#!/usr/bin/env -S /opt/deno/bin/deno run -A --quiet\nconsole.log(1);\n",
  );
  assert.throws(() => withShebang("console.log(1);\n", "/opt/deno"), /not a qvm build/);
  assert.throws(() => withShebang(built, "/opt/my deno/deno"), /spaces/);
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
