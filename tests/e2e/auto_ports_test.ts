/**
 * `auto` host ports stay put: picked at a VM's first start, kept across restarts and stop/start
 * while free, picked again (said on stderr) only when another program holds the port; `start
 * --dry-run` shows the port the next start keeps.
 */
import assert from "node:assert/strict";
import { parsePortSpec } from "../../src/config/network.ts";
import { settleForwards } from "../../src/cloud/ports.ts";
import { type QvmEnv, withEnv } from "../helpers/qvm.ts";

/** A host port free right now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("settleForwards keeps an auto forward's earlier port while it is free, else picks another and says so", () => {
  const ports = ["auto:22", "auto:80"].map(parsePortSpec);
  const kept = freePort();
  const notes: string[] = [];
  const settled = settleForwards(ports, {
    previous: { "127.0.0.1:auto:22/tcp": kept },
    note: (m) => notes.push(m),
  });
  assert.equal(settled[0].host, kept);
  assert.notEqual(settled[1].host, kept);
  assert.equal(notes.length, 0);

  const held = Deno.listen({ hostname: "127.0.0.1", port: kept });
  try {
    const again = settleForwards(ports.slice(0, 1), {
      previous: { "127.0.0.1:auto:22/tcp": kept },
      holderOf: () => undefined,
      note: (m) => notes.push(m),
    });
    assert.notEqual(again[0].host, kept);
    assert.deepEqual(notes, [
      `host port ${kept} of auto:22 is in use by another program: it now gets ${again[0].host}`,
    ]);
  } finally {
    held.close();
  }
});

/** The host port forwarded to guest port `guest`, from `qvm ports --json`. */
async function hostPort(env: QvmEnv, vm: string, guest: number): Promise<number> {
  const { forwards } = JSON.parse(await env.ok(["ports", vm, "--json"])) as {
    forwards: { guest_port: number; host_port: number }[];
  };
  return forwards.find((f) => f.guest_port === guest)!.host_port;
}

Deno.test("an auto port is kept across a restart and a stop/start, and re-picked only when taken", async () => {
  await withEnv(async (env) => {
    // A PC with no OS: QEMU and its forwards run, no guest needs to boot.
    const config = await env.file(
      "fw.yaml",
      'memory: 32M\narguments:\n  - accel: tcg\nnetwork: {ports: ["auto:22", "auto:8080"]}\n',
    );
    await env.ok(["add", config, "--name", "fw"]);
    const never = await env.ok(["start", "fw", "--dry-run"]);
    assert.match(never, /hostfwd=tcp:127\.0\.0\.1:0-:22,hostfwd=tcp:127\.0\.0\.1:0-:8080 /);
    await env.ok(["start", "fw", "--wait-for", "process"]);
    const first = await hostPort(env, "fw", 22);
    const web = await hostPort(env, "fw", 8080);
    assert.notEqual(first, web);

    await env.ok(["restart", "fw", "--force", "--wait-for", "process"]);
    assert.equal(await hostPort(env, "fw", 22), first);
    assert.equal(await hostPort(env, "fw", 8080), web);

    await env.ok(["stop", "fw", "--force"]);
    const started = await env.run(["start", "fw", "--wait-for", "process"]);
    assert.equal(started.code, 0, started.stderr);
    assert.equal(started.stderr, "");
    assert.equal(await hostPort(env, "fw", 22), first);
    assert.equal(await hostPort(env, "fw", 8080), web);

    // Another program takes the port while the VM is stopped: a new one, said on stderr...
    await env.ok(["stop", "fw", "--force"]);
    const other = Deno.listen({ hostname: "127.0.0.1", port: first });
    let second: number;
    try {
      const res = await env.run(["start", "fw", "--wait-for", "process"]);
      assert.equal(res.code, 0, res.stderr);
      second = await hostPort(env, "fw", 22);
      assert.notEqual(second, first);
      assert.equal(
        res.stderr,
        `qvm: warning: VM 'fw': host port ${first} of auto:22 is in use by another program: ` +
          `it now gets ${second}\n`,
      );
      assert.equal(await hostPort(env, "fw", 8080), web);
    } finally {
      other.close();
    }
    // ...and that one is kept from then on, even once the old one is free again.
    await env.ok(["stop", "fw", "--force"]);
    // A dry run shows the ports the next start keeps, as it would run them.
    const dry = await env.ok(["start", "fw", "--dry-run"]);
    assert.match(
      dry,
      new RegExp(
        `hostfwd=tcp:127\\.0\\.0\\.1:${second}-:22,hostfwd=tcp:127\\.0\\.0\\.1:${web}-:8080 `,
      ),
    );
    await env.ok(["start", "fw", "--wait-for", "process"]);
    assert.equal(await hostPort(env, "fw", 22), second);
  });
});
