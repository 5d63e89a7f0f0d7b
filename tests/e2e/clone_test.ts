/**
 * `qvm clone`: a full clone gets copies of what the source's disks hold (sparse; an overlay stays
 * one over the same image), a linked one new disks; nothing writable is shared (files in QEMU
 * options are refused, fixed host ports become auto); an interrupted clone leaves nothing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { exists, type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";

async function run(command: string, ...args: string[]): Promise<{ code: number; out: string }> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  return { code: out.code, out: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

async function must(command: string, ...args: string[]): Promise<string> {
  const result = await run(command, ...args);
  assert.equal(result.code, 0, `${command} ${args.join(" ")}: ${result.out}`);
  return result.out;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Waits until no process holds `file` open for writing (a QEMU stopped a moment ago may). */
async function untilUnlocked(file: string): Promise<void> {
  const free = async () => (await run("qemu-img", "info", file)).code === 0;
  assert.ok(await eventually(free, { timeout: 10_000 }), `${file} stayed locked`);
}

async function inspect(env: QvmEnv, vm: string) {
  return JSON.parse(await env.ok(["inspect", vm, "--json"]));
}

Deno.test("a full clone copies what the source's disks hold: sparse, its overlay over the same image, ports made auto", async () => {
  await withEnv(async (env) => {
    const base = join(env.root, "base.qcow2");
    await must("qemu-img", "create", "-q", "-f", "qcow2", base, "32M");
    await must("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 4M", base);
    const fixed = join(env.root, "fixed.img");
    const port = freePort();
    const config = await guestConfig(env, {
      name: "src",
      extra: `image: ${base}\n` +
        `storage:\n  - {name: data, size: 16M}\n  - {name: scratch, type: raw, size: 8M, file: ${fixed}}\n` +
        `network: {ports: ['127.0.0.1:${port}:22', 'auto:80']}`,
    });
    const srcId = (await env.ok(["add", config])).trim();
    await env.ok(["start", "src", ...WAIT_READY]);
    await env.ok(["stop", "src", "--force"]);
    const overlay = join(env.dataDir, "disks", srcId, "image-overlay.qcow2");
    const data = join(env.dataDir, "disks", srcId, "data.qcow2");
    await untilUnlocked(data);
    // What a guest would have written, through QEMU's own block layer.
    await must("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 1M", overlay);
    await must("qemu-io", "-f", "qcow2", "-c", "write -P 0x6b 2M 3M", data);
    await must("qemu-io", "-f", "raw", "-c", "write -P 0x7c 4M 1M", fixed);
    const before = await Deno.readFile(base);

    const cloned = await env.run(["clone", "src", "cp", "--json"]);
    assert.equal(cloned.code, 0, cloned.stderr);
    const result = JSON.parse(cloned.stdout);
    const cpDir = join(env.dataDir, "disks", result.id);
    assert.deepEqual(
      result.copied.map((c: { disk: string; from: string; to: string }) => [c.disk, c.from, c.to]),
      [
        ["qvm-root", overlay, join(cpDir, "image-overlay.qcow2")],
        ["data", data, join(cpDir, "data.qcow2")],
        ["scratch", fixed, join(cpDir, "scratch.raw")],
      ],
    );
    for (const copy of result.copied as { from: string; to: string }[]) {
      assert.match(await must("qemu-img", "compare", copy.from, copy.to), /Images are identical/);
    }
    // The overlay is copied as an overlay of the same image, not flattened.
    const info = JSON.parse(
      await must("qemu-img", "info", "--output=json", join(cpDir, "image-overlay.qcow2")),
    );
    assert.equal(info["backing-filename"], base);
    assert.equal(info["backing-filename-format"], "qcow2");
    assert.ok(info["actual-size"] < 3 * 1024 * 1024, `the copy holds ${info["actual-size"]} bytes`);
    // The raw copy is sparse: 1 MiB written of 8.
    const raw = await Deno.stat(join(cpDir, "scratch.raw"));
    assert.equal(raw.size, 8 * 1024 * 1024);
    assert.ok(raw.blocks! * 512 < 4 * 1024 * 1024, `the raw copy allocates ${raw.blocks! * 512}`);
    assert.match(cloned.stderr, new RegExp(`127\\.0\\.0\\.1:${port}:22/tcp has a fixed host port`));
    assert.match(cloned.stderr, /'cp' gets auto:22/);

    const cp = await inspect(env, "cp");
    assert.deepEqual(
      cp.created_files.sort(),
      result.copied.map((c: { to: string }) => c.to).sort(),
    );
    assert.equal(
      cp.config.storage.find((s: { name: string }) => s.name === "scratch").file,
      undefined,
    );
    assert.deepEqual(cp.config.network.ports.map((p: { host: unknown }) => p.host), [
      "auto",
      "auto",
    ]);
    assert.equal((await inspect(env, "src")).config.network.ports[0].host, port);
    // Both run at once, each on its own disks; the image was only read.
    await env.ok(["start", "src", ...WAIT_READY]);
    await env.ok(["start", "cp", ...WAIT_READY]);
    await env.ok(["stop", "src", "--force"]);
    await env.ok(["stop", "cp", "--force"]);
    assert.deepEqual(await Deno.readFile(base), before);
  });
});

Deno.test("clone refuses writable files named in arguments or args (exit 3, naming the file); --linked copies nothing", async () => {
  await withEnv(async (env) => {
    const shared = join(env.root, "shared.img");
    const hd = join(env.root, "hd.img");
    const iso = join(env.root, "ro.img");
    for (const file of [shared, hd, iso]) await Deno.writeFile(file, new Uint8Array(1024 * 1024));
    const cases: [string, string, string][] = [
      ["d1", `arguments:\n  - drive: file=${shared},format=raw,if=virtio\n`, shared],
      ["d2", `args: ["-hdb", "${hd}"]\n`, hd],
      ["d3", `arguments:\n  - drive: {file: ${shared}, format: raw, if: virtio}\n`, shared],
    ];
    for (const [name, yaml, file] of cases) {
      await env.ok(["add", await env.file(`${name}.yaml`, yaml), "--name", name]);
      const refused = await env.run(["clone", name, `${name}-copy`]);
      assert.equal(refused.code, 3, refused.stderr);
      assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
      assert.match(
        refused.stderr,
        new RegExp(`cannot clone '${name}': .*${file}, which the clone would share`),
      );
      assert.equal((await env.run(["status", `${name}-copy`])).code, 3, "a clone was added");
    }
    // A read-only drive may be shared.
    await env.ok([
      "add",
      await env.file(
        "r.yaml",
        `arguments:\n  - drive: file=${iso},format=raw,if=virtio,readonly=on\n`,
      ),
      "--name",
      "r",
    ]);
    await env.ok(["clone", "r", "r2"]);

    // --linked: a fresh overlay of the image at first start, no copies.
    const base = join(env.root, "base.qcow2");
    await must("qemu-img", "create", "-q", "-f", "qcow2", base, "16M");
    await env.ok(["add", await guestConfig(env, { name: "l1", extra: `image: ${base}` })]);
    await env.ok(["start", "l1", ...WAIT_READY]);
    await env.ok(["stop", "l1", "--force"]);
    const linked = JSON.parse(await env.ok(["clone", "l1", "l2", "--linked", "--json"]));
    assert.deepEqual(linked.copied, []);
    assert.ok(!exists(join(env.dataDir, "disks", linked.id)), "a linked clone copied disks");
    const fixed = await guestConfig(env, {
      name: "fx",
      extra: `storage:\n  - {name: data, file: ${env.root}/data.qcow2, size: 16M}`,
    });
    await env.ok(["add", fixed]);
    const refused = await env.run(["clone", "fx", "fx2", "--linked"]);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(
      refused.stderr,
      /disk 'data' is the fixed file .*data\.qcow2, which the clone would share/,
    );
  });
});

Deno.test("a clone interrupted by SIGTERM while it copies adds no VM and leaves no copies", async () => {
  await withEnv(async (env) => {
    const bin = join(env.root, "slowbin");
    await Deno.mkdir(bin);
    const marker = join(env.root, "convert.started");
    await Deno.writeTextFile(
      join(bin, "qemu-img"),
      `#!/bin/sh\nif [ "$1" = convert ]; then touch ${marker}; exec sleep 300; fi\nexec /usr/bin/qemu-img "$@"\n`,
      { mode: 0o755 },
    );
    await env.ok([
      "add",
      await env.file(
        "s.yaml",
        "arguments: [{accel: tcg}]\nstorage:\n  - {name: data, size: 16M}\n",
      ),
      "--name",
      "s",
    ]);
    await env.run(["start", "s", "--wait-for", "process"]);
    await env.ok(["stop", "s", "--force"]);
    const disksBefore = [...Deno.readDirSync(join(env.dataDir, "disks"))].map((e) => e.name);
    const child = env.command(["clone", "s", "s2"], {
      env: { PATH: `${bin}:${Deno.env.get("PATH")}` },
    }).spawn();
    assert.ok(await eventually(() => exists(marker), { timeout: 30_000 }), "the copy never began");
    child.kill("SIGTERM");
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 143, stderr);
    assert.match(stderr, /interrupted: no VM was added/);
    assert.equal((await env.run(["status", "s2"])).code, 3, "the interrupted clone was added");
    assert.deepEqual(
      [...Deno.readDirSync(join(env.dataDir, "disks"))].map((e) => e.name),
      disksBefore,
    );
  });
});
