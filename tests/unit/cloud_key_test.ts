/**
 * qvm's own SSH key pair, which every cloud VM's seed carries: made once even when several qvm
 * processes need it first at the same moment, never replaced once it exists (a lost `.pub` is
 * rebuilt from it), kept at the mode ssh accepts, and reported by doctor when it is not.
 */
import assert from "node:assert/strict";
import { ensureKey, keyPaths } from "../../src/cloud/ssh.ts";
import { withEnv } from "../helpers/qvm.ts";

const SSH_MODULE = new URL("../../src/cloud/ssh.ts", import.meta.url).href;

async function tempDataDir(): Promise<{ root: string; dataDir: string }> {
  const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "qvmk-" });
  const dataDir = `${root}/data`;
  await Deno.mkdir(dataDir, { mode: 0o700 });
  return { root, dataDir };
}

Deno.test("eight qvm processes needing the key first at the same moment make one key pair and all get it", async () => {
  const { root, dataDir } = await tempDataDir();
  try {
    // Each process loads qvm's key code, then waits for one common moment before asking.
    const at = Date.now() + 3000;
    const script = `
      const { ensureKey } = await import(${JSON.stringify(SSH_MODULE)});
      await new Promise((r) => setTimeout(r, Math.max(0, ${at} - Date.now())));
      try {
        console.log(await ensureKey(${JSON.stringify(dataDir)}));
      } catch (error) {
        console.log("FAILED " + error.message);
      }
    `;
    const runs = await Promise.all(
      Array.from({ length: 8 }, () =>
        new Deno.Command(Deno.execPath(), {
          args: ["eval", script],
          stdout: "piped",
          stderr: "piped",
        }).output()),
    );
    const lines = runs.map((r) => new TextDecoder().decode(r.stdout).trim());
    for (const [i, run] of runs.entries()) {
      assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
      assert.match(lines[i], /^ssh-ed25519 /, lines[i]);
    }
    assert.equal(new Set(lines).size, 1, `one key for all:\n${lines.join("\n")}`);
    const paths = keyPaths(dataDir);
    assert.equal((await Deno.readTextFile(paths.public)).trim(), lines[0]);
    // The private key on disk is the one whose public half everybody got.
    const derived = await new Deno.Command("ssh-keygen", { args: ["-y", "-f", paths.private] })
      .output();
    assert.equal(new TextDecoder().decode(derived.stdout).split(" ")[1], lines[0].split(" ")[1]);
    assert.deepEqual(
      [...Deno.readDirSync(`${dataDir}/ssh`)].map((e) => e.name).sort(),
      ["id_ed25519", "id_ed25519.lock", "id_ed25519.pub"],
      "nothing made aside is left",
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a lost id_ed25519.pub is rebuilt from the private key, which is never replaced", async () => {
  const { root, dataDir } = await tempDataDir();
  try {
    const paths = keyPaths(dataDir);
    const line = await ensureKey(dataDir);
    const secret = await Deno.readFile(paths.private);
    const warnings: string[] = [];
    for (
      const lose of [() => Deno.remove(paths.public), () => Deno.writeTextFile(paths.public, "")]
    ) {
      await lose();
      const again = await ensureKey(dataDir, { warn: (m) => warnings.push(m) });
      assert.equal(again.split(" ").slice(0, 2).join(" "), line.split(" ").slice(0, 2).join(" "));
      assert.deepEqual(await Deno.readFile(paths.private), secret, "the private key is kept");
      assert.equal((await Deno.readTextFile(paths.public)).trim(), again);
    }
    assert.equal(warnings.length, 2);
    assert.match(warnings[0], /rebuilt .*id_ed25519\.pub from qvm's SSH key/);
    // A private key ssh-keygen cannot read is not replaced either: one clear error.
    await Deno.writeTextFile(paths.private, "not a key\n", { mode: 0o600 });
    await Deno.remove(paths.public);
    await assert.rejects(
      () => ensureKey(dataDir),
      /cannot read qvm's SSH key .* qvm never replaces an existing key/,
    );
    assert.equal(await Deno.readTextFile(paths.private), "not a key\n");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a private key others can read is set back to 0600 on use; doctor reports it and --fix repairs it", async () => {
  await withEnv(async (env) => {
    await Deno.mkdir(env.dataDir, { mode: 0o700 });
    const paths = keyPaths(env.dataDir);
    await ensureKey(env.dataDir);
    await Deno.chmod(paths.private, 0o644);
    const report = await env.run(["doctor", "--json"]);
    const found = JSON.parse(report.stdout).checks.find((c: { check: string }) =>
      c.check === "ssh_key"
    );
    assert.equal(found?.status, "problem", report.stdout);
    assert.match(found.what, /mode 0644/);
    assert.equal(
      (await Deno.stat(paths.private)).mode! & 0o777,
      0o644,
      "doctor alone changes nothing",
    );
    const fixed = await env.run(["doctor", "--fix", "--json"]);
    const repaired = JSON.parse(fixed.stdout).checks.find((c: { check: string }) =>
      c.check === "ssh_key"
    );
    assert.equal(repaired?.status, "fixed", fixed.stdout);
    assert.equal((await Deno.stat(paths.private)).mode! & 0o777, 0o600);

    await Deno.chmod(paths.private, 0o640);
    const warnings: string[] = [];
    await ensureKey(env.dataDir, { warn: (m) => warnings.push(m) });
    assert.equal((await Deno.stat(paths.private)).mode! & 0o777, 0o600);
    assert.match(warnings.join("\n"), /was mode 0640, which ssh refuses: set to 0600/);
  });
});
