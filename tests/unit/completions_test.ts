import assert from "node:assert/strict";
import { join } from "node:path";
import { QVM_MAIN, QvmEnv } from "../helpers/qvm.ts";

/** Runs the bash completion function for `words` (the last one being completed). */
async function complete(env: QvmEnv, script: string, words: string[]): Promise<string[]> {
  const bin = join(env.root, "bin");
  await Deno.mkdir(bin, { recursive: true });
  await Deno.writeTextFile(
    join(bin, "qvm"),
    `#!/bin/sh\nexec "${Deno.execPath()}" run -A --quiet "${QVM_MAIN}" "$@"\n`,
    { mode: 0o755 },
  );
  const scriptFile = join(env.root, "qvm.bash");
  await Deno.writeTextFile(scriptFile, script);
  const quoted = words.map((w) => `'${w}'`).join(" ");
  const program = `source '${scriptFile}'; COMP_WORDS=(${quoted}); COMP_CWORD=${
    words.length - 1
  }; _qvm; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const out = await new Deno.Command("bash", {
    args: ["-c", program],
    env: {
      PATH: `${bin}:${Deno.env.get("PATH")}`,
      QVM_DATA_DIR: env.dataDir,
      QVM_RUNTIME_DIR: env.runtimeDir,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).split("\n").filter(Boolean).sort();
}

Deno.test("bash completions complete VM names, commands, subcommands, flags and flag values", async () => {
  const env = await QvmEnv.create();
  try {
    for (const name of ["web1", "web2", "db1"]) await env.ok(["add", "--empty", "--name", name]);
    const script = await env.ok(["completions", "bash"]);
    assert.deepEqual(await complete(env, script, ["qvm", "status", "w"]), ["web1", "web2"]);
    assert.deepEqual(await complete(env, script, ["qvm", "--json", "stop", ""]), [
      "db1",
      "web1",
      "web2",
    ]);
    assert.deepEqual(await complete(env, script, ["qvm", "st"]), [
      "start",
      "status",
      "stop",
      "storage",
    ]);
    assert.deepEqual(await complete(env, script, ["qvm", "stop", "web1", "--f"]), ["--force"]);
    assert.deepEqual(await complete(env, script, ["qvm", "ls", "--status", "r"]), ["running"]);
    assert.deepEqual(await complete(env, script, ["qvm", "qmp", "re"]), ["resume"]);
    assert.deepEqual(await complete(env, script, ["qvm", "qmp", "pause", "d"]), ["db1"]);
    assert.deepEqual(await complete(env, script, ["qvm", "rm", "web1", "w"]), ["web1", "web2"]);
    assert.deepEqual(await complete(env, script, ["qvm", "completions", "f"]), ["fish"]);
  } finally {
    await env.cleanup();
  }
});

Deno.test("zsh and fish completions are generated from the same table", async () => {
  const env = await QvmEnv.create();
  try {
    const zsh = await env.ok(["completions", "zsh"]);
    assert.match(zsh, /^#compdef qvm/);
    assert.match(zsh, /bashcompinit/);
    assert.match(zsh, /complete -F _qvm qvm/);
    const fish = await env.ok(["completions", "fish"]);
    assert.match(fish, /complete -c qvm .* -a start /);
    assert.match(fish, /-l delete-storage/);
    assert.match(fish, /qvm ls --quiet/);
    const bad = await env.run(["completions", "tcsh"]);
    assert.equal(bad.code, 3);
    assert.match(bad.stderr, /unknown shell 'tcsh'/);
  } finally {
    await env.cleanup();
  }
});
