/**
 * Messages that say what to do: "did you mean" for unknown commands, options, subcommands, VM
 * names and config keys (close matches only); a fixed host port in use names the VM of ours that
 * holds it and suggests `auto`; `qvm ssh` to a guest whose SSH server does not answer yet says so
 * and suggests `qvm wait VM --for ssh`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { closeMatches, didYouMean, editDistance } from "../../src/errors.ts";
import { COMMANDS } from "../../src/cli/registry.ts";
import { validateConfig } from "../../src/config/mod.ts";
import { type QvmEnv, withEnv } from "../helpers/qvm.ts";

const COMMAND_NAMES = COMMANDS.map((c) => c.name);

Deno.test("edit distance counts a swap of neighbours as one edit, and ignores case", () => {
  const cases: [string, string, number][] = [
    ["memroy", "memory", 1],
    ["strat", "start", 1],
    ["stpo", "stop", 1],
    ["", "abc", 3],
    ["kitten", "sitting", 3],
    ["JSON", "json", 0],
    ["ls", "rm", 2],
  ];
  for (const [a, b, want] of cases) assert.equal(editDistance(a, b), want, `${a} ${b}`);
});

Deno.test("close matches: typos within a third of the length, else one command it begins; never far ones", () => {
  const cases: [string, string[]][] = [
    ["strat", ["start"]],
    ["stpo", ["stop"]],
    ["sotp", ["stop"]],
    ["restrat", ["restart"]],
    ["snap", ["snapshot"]],
    ["import", ["import-libvirt"]],
    ["xyzzy", []],
    ["rn", ["rm"]],
    ["frobnicate", []],
    ["s", []],
  ];
  for (const [word, want] of cases) assert.deepEqual(closeMatches(word, COMMAND_NAMES), want, word);
  assert.deepEqual(closeMatches("web", ["web1", "web2", "db1"]), ["web1", "web2"]);
  assert.equal(
    didYouMean("web", ["web1", "web2", "web3"]),
    ": did you mean 'web1', 'web2' or 'web3'?",
  );
  assert.equal(didYouMean("xyz", ["web1"]), "");
});

Deno.test("an unknown config key like memroy is ignored with a warning that names memory", () => {
  const warnings: string[] = [];
  const config = validateConfig(
    {
      memroy: "1G",
      cpus: 2,
      colour: "red",
      storage: [{ name: "d", szie: "1G" }],
      network: { prots: ["auto:22"] },
      cloud_init: { usr: "dev", ssh_authorised_keys: [] },
    },
    { warn: (m) => warnings.push(m) },
  );
  assert.equal(config.memory, undefined);
  assert.deepEqual(warnings.sort(), [
    "unknown config key 'colour' (ignored)",
    "unknown config key 'cpus' (ignored): did you mean 'cpu'?",
    "unknown config key 'memroy' (ignored): did you mean 'memory'?",
    "unknown key cloud_init.ssh_authorised_keys (ignored): did you mean 'ssh_authorized_keys'?",
    "unknown key cloud_init.usr (ignored): did you mean 'user'?",
    "unknown key network.prots (ignored): did you mean 'ports'?",
    "unknown storage key 'szie' in 'd' (ignored): did you mean 'size'?",
  ]);
});

Deno.test("qvm says 'did you mean' for an unknown command, option, subcommand and VM name", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", "--empty", "--name", "web1"]);
    await env.ok(["add", "--empty", "--name", "db1"]);
    const cases: [string[], string][] = [
      [["strat", "web1"], "qvm: unknown command 'strat': did you mean 'start'?\n"],
      [["frobnicate"], "qvm: unknown command 'frobnicate' (see 'qvm --help')\n"],
      [
        ["ls", "--stauts", "running"],
        "qvm: qvm ls: unknown option '--stauts': did you mean '--status'?\n",
      ],
      [
        ["stop", "web1", "--forse"],
        "qvm: qvm stop: unknown option '--forse': did you mean '--force'?\n",
      ],
      [["ls", "--colour"], "qvm: qvm ls: unknown option '--colour'\n"],
      [
        ["storage", "verfy"],
        "qvm: storage: unknown subcommand 'verfy' (ls, verify, orphaned): did you mean 'verify'?\n",
      ],
      [["status", "web"], "qvm: no VM with id or name 'web': did you mean 'web1'?\n"],
      [["start", "wbe1"], "qvm: no VM with id or name 'wbe1': did you mean 'web1'?\n"],
      [["stop", "db1", "dbl"], "qvm: no VM with id or name 'dbl': did you mean 'db1'?\n"],
      [["info", "nothing-like-it"], "qvm: no VM with id or name 'nothing-like-it'\n"],
    ];
    for (const [args, stderr] of cases) {
      const res = await env.run(args);
      assert.equal(res.code, 3, args.join(" "));
      assert.equal(res.stderr, stderr, args.join(" "));
    }
    const config = await env.file("typo.yaml", "memroy: 1G\n");
    const added = await env.run(["add", config, "--name", "t1"]);
    assert.equal(added.code, 0, added.stderr);
    assert.match(
      added.stderr,
      /^qvm: warning: .*unknown config key 'memroy' \(ignored\): did you mean 'memory'\?$/m,
    );
  });
});

/** A VM with a PC but no OS: QEMU and its port forwards run, nothing answers in the guest. */
async function forwardingVm(env: QvmEnv, name: string, ports: string[]): Promise<void> {
  const config = await env.file(
    `${name}.yaml`,
    [
      "memory: 32M",
      "arguments:",
      "  - accel: tcg",
      `network: {ports: [${ports.map((p) => `"${p}"`).join(", ")}]}`,
    ].join("\n"),
  );
  await env.ok(["add", config, "--name", name]);
}

/** A host port free right now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("a fixed host port in use names the VM of ours holding it and suggests auto", async () => {
  await withEnv(async (env) => {
    const port = freePort();
    await forwardingVm(env, "holder", [`${port}:22`]);
    await forwardingVm(env, "second", [`${port}:22`]);
    await env.ok(["start", "holder", "--wait-for", "process"]);
    const want = `qvm: port forward ${port}:22/tcp: host port ${port} on 127.0.0.1 is already in ` +
      `use by VM 'holder'; use 'auto:22' to let qvm pick a free port\n`;
    const start = await env.run(["start", "second"]);
    assert.deepEqual([start.code, start.stderr], [3, want]);
    // Defining a VM on that port is refused the same way, and defines nothing.
    const config = await env.file("third.yaml", `network: {ports: ["${port}:22"]}\n`);
    const add = await env.run(["add", config, "--name", "third"]);
    assert.deepEqual([add.code, add.stderr], [3, want]);
    // A port another program holds: no VM to name, still the way out.
    await env.ok(["stop", "holder", "--force"]);
    const other = Deno.listen({ hostname: "127.0.0.1", port });
    try {
      const res = await env.run(["start", "second"]);
      assert.equal(res.code, 3);
      assert.equal(
        res.stderr,
        `qvm: port forward ${port}:22/tcp: host port ${port} on 127.0.0.1 is already in use; ` +
          "use 'auto:22' to let qvm pick a free port\n",
      );
    } finally {
      other.close();
    }
  });
});

Deno.test("qvm ssh to a guest whose SSH server does not answer yet says so and suggests qvm wait --for ssh", async () => {
  await withEnv(async (env) => {
    await forwardingVm(env, "booting", ["auto:22"]);
    await env.ok(["start", "booting", "--wait-for", "process"]);
    // The real ssh, told to give up on the silent forward after 2 s instead of the kernel's 75 s.
    const bin = join(env.root, "bin");
    await Deno.mkdir(bin);
    await Deno.writeTextFile(
      join(bin, "ssh"),
      '#!/bin/sh\nexec /usr/bin/ssh -o ConnectTimeout=2 "$@"\n',
      { mode: 0o755 },
    );
    const res = await env.run(["ssh", "booting", "--", "true"], {
      env: { PATH: `${bin}:${Deno.env.get("PATH")}` },
    });
    assert.equal(res.code, 255, res.stderr);
    assert.match(
      res.stderr,
      /^qvm: VM 'booting' runs, but its SSH server does not answer yet \(the guest may still be booting\): wait for it with 'qvm wait booting --for ssh'\n$/m,
    );
  });
});
