/**
 * The disk files qvm makes and deletes: `rm --delete-storage` keeps every file another VM reaches
 * (its disks, `image:`, backing chains, QEMU options, its overlay's backing file), and a first
 * start killed while it makes disks leaves nothing unrecorded and nothing short under a disk's name.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { exists, type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";

async function qemuImg(...args: string[]): Promise<void> {
  const out = await new Deno.Command("qemu-img", { args, stdout: "null", stderr: "piped" })
    .output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
}

function disk(name: string, file: string, type = "qcow2", size = "16M"): string {
  return `  - {name: ${name}, file: ${file}, size: ${size}, type: ${type}}\n`;
}

async function createdFiles(env: QvmEnv, vm: string): Promise<string[]> {
  return JSON.parse(await env.ok(["inspect", vm, "--json"])).created_files;
}

Deno.test("rm --delete-storage keeps what other VMs reach: image:, an image's backing chain, -kernel, an overlay's backing file", async () => {
  await withEnv(async (env) => {
    const x = join(env.root, "x");
    await Deno.mkdir(x);
    const [base, chained, kernel, old, own] = ["base.qcow2", "cb.qcow2", "k.img", "q2.qcow2", "own"]
      .map((f) => join(x, f));
    await env.ok([
      "add",
      await env.file(
        "a.yaml",
        "arguments: [{accel: tcg}]\nstorage:\n" + disk("base", base) + disk("cb", chained) +
          disk("k", kernel, "raw", "1M") + disk("q2", old) + disk("own", own),
      ),
      "--name",
      "a",
    ]);
    // The start makes a's disks (QEMU then runs the firmware with nothing to boot).
    await env.run(["start", "a", "--wait-for", "process"]);
    await env.ok(["stop", "a", "--force"]);
    assert.ok([base, chained, kernel, old, own].every(exists), "the start made a's disks");
    assert.equal((await createdFiles(env, "a")).length, 5);

    // b: image: one of a's disks, never started.
    await env.ok(["add", "--empty", "--name", "b", "--image", base]);
    // c: image: a file of its own whose qcow2 header has one of a's disks below it.
    const top = join(env.root, "top.qcow2");
    await qemuImg("create", "-q", "-f", "qcow2", "-b", chained, "-F", "qcow2", top);
    await env.ok([
      "add",
      await env.file("c.yaml", `image: ${top}\nallowed_backing_files: ["${chained}"]\n`),
      "--empty",
      "--name",
      "c",
    ]);
    // d: a kernel named only in raw args.
    await env.ok([
      "add",
      await env.file("d.yaml", `args: ["-kernel", "${kernel}"]\n`),
      "--name",
      "d",
    ]);
    // e: started over one of a's disks, then given another image: its overlay still reads q2.
    const plain = join(env.root, "plain.qcow2");
    await qemuImg("create", "-q", "-f", "qcow2", plain, "16M");
    await env.ok(["add", await env.file("e.yaml", "arguments: [{accel: tcg}]\n"), "--name", "e"]);
    await env.ok(["apply", "e", "--image", old]);
    await env.run(["start", "e", "--wait-for", "process"]);
    await env.ok(["stop", "e", "--force"]);
    await env.ok(["apply", "e", "--image", plain]);

    const rm = await env.run(["rm", "a", "--delete-storage", "--yes", "--json"]);
    assert.equal(rm.code, 0, rm.stderr);
    const kept = JSON.parse(rm.stdout)[0].kept_files as { file: string; reason: string }[];
    assert.deepEqual(kept.map((k) => k.file).sort(), [base, chained, kernel, old].sort());
    const reason = (file: string) => kept.find((k) => k.file === file)!.reason;
    assert.match(reason(base), /VM 'b' uses it \(image:\)/);
    assert.match(reason(chained), /VM 'c' uses it \(in the backing chain of image:\)/);
    assert.match(reason(kernel), /VM 'd' uses it \(-kernel\)/);
    assert.match(reason(old), /VM 'e' uses it \(in the backing chain of its root disk\)/);
    for (const file of [base, chained, kernel, old]) {
      assert.ok(exists(file), `${file}, which another VM reaches, was deleted`);
      assert.match(rm.stderr, new RegExp(`kept ${file}: VM '.' uses it`));
    }
    assert.ok(!exists(own), "a disk no other VM reaches was kept");
    // b starts over the image a made.
    await env.ok(["apply", "b", await env.file("tcg.yaml", "arguments: [{accel: tcg}]\n")]);
    const started = await env.run(["start", "b", "--wait-for", "qmp"]);
    assert.equal(started.code, 0, started.stderr);
  });
});

/**
 * A `qemu-img` first on PATH that runs the real one for everything but `create` (or, with
 * `after: true`, after it), and there writes its pid to `marker` and sleeps: a start killed then
 * is one killed while it makes a disk.
 */
async function slowQemuImg(env: QvmEnv, options: { after: boolean }): Promise<string> {
  const bin = join(env.root, "slowbin");
  await Deno.mkdir(bin, { recursive: true });
  const marker = join(env.root, "img.pid");
  const real = "/usr/bin/qemu-img";
  const script = [
    "#!/bin/sh",
    `if [ "$1" != create ]; then exec ${real} "$@"; fi`,
    options.after ? `${real} "$@" || exit 1` : "",
    `echo $$ > ${marker}`,
    "exec sleep 300",
    "",
  ].join("\n");
  await Deno.writeTextFile(join(bin, "qemu-img"), script, { mode: 0o755 });
  return bin;
}

/** Starts `vm` with the slow qemu-img, and kills that start (SIGKILL) while it makes a disk. */
async function killStartWhileCreating(
  env: QvmEnv,
  vm: string,
  options: { after: boolean },
): Promise<void> {
  const bin = await slowQemuImg(env, options);
  const marker = join(env.root, "img.pid");
  const child = env.command(["start", vm, "--wait-for", "process"], {
    env: { PATH: `${bin}:${Deno.env.get("PATH")}` },
  }).spawn();
  try {
    assert.ok(
      await eventually(() => exists(marker), { timeout: 30_000 }),
      "the start never made a disk",
    );
  } finally {
    child.kill("SIGKILL");
    await child.output();
    const pid = Number((await Deno.readTextFile(marker).catch(() => "")).trim());
    if (pid > 0) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    await Deno.remove(marker).catch(() => {});
  }
}

Deno.test("a first start killed while it makes a raw disk leaves no short disk: the next start makes it whole", async () => {
  await withEnv(async (env) => {
    const raw = join(env.root, "data.img");
    await env.ok([
      "add",
      await env.file("r.yaml", "arguments: [{accel: tcg}]\nstorage:\n" + disk("data", raw, "raw")),
      "--name",
      "r",
    ]);
    await killStartWhileCreating(env, "r", { after: false });
    assert.ok(!exists(raw), "a disk that was never made whole is there under its name");
    const verify = await env.run(["storage", "verify", "r", "--json"]);
    const [result] = JSON.parse(verify.stdout);
    assert.equal(result.result, "not_created", verify.stdout);
    assert.match(result.detail, /interrupted start left it unfinished/);
    // What the killed start was making is recorded, so rm --delete-storage would remove it.
    assert.ok((await createdFiles(env, "r")).includes(raw));

    const started = await env.run(["start", "r", "--wait-for", "process"]);
    assert.equal(started.code, 0, started.stderr);
    assert.equal((await Deno.stat(raw)).size, 16 * 1024 * 1024);
    assert.deepEqual(await createdFiles(env, "r"), [raw]);
    assert.deepEqual(
      [...Deno.readDirSync(env.root)].map((e) => e.name).filter((n) => n.includes("qvm-part")),
      [],
    );
    await env.ok(["stop", "r", "--force"]);
  });
});

Deno.test("an empty disk, or a raw disk qvm made that has since shrunk, is refused at start with one line; storage verify fails on it", async () => {
  await withEnv(async (env) => {
    const empty = join(env.root, "empty.img");
    const short = join(env.root, "short.img");
    const theirs = join(env.root, "theirs.img");
    await Deno.writeFile(empty, new Uint8Array());
    await Deno.writeFile(theirs, new Uint8Array(4096)); // a user's file is taken at its own size
    const add = async (vm: string, file: string) =>
      await env.ok([
        "add",
        await env.file(
          `${vm}.yaml`,
          "arguments: [{accel: tcg}]\nstorage:\n" + disk("d", file, "raw"),
        ),
        "--name",
        vm,
      ]);
    await add("s0", short);
    await env.ok(["start", "s0", "--wait-for", "process"]);
    await env.ok(["stop", "s0", "--force"]);
    await Deno.truncate(short, 4096); // what an interrupted copy of it would leave
    await add("e0", empty);
    for (const [vm, file] of [["e0", empty], ["s0", short]]) {
      const start = await env.run(["start", vm, "--wait-for", "process"]);
      assert.equal(start.code, 3, start.stderr);
      assert.equal(start.stderr.trim().split("\n").length, 1, start.stderr);
      assert.match(start.stderr, new RegExp(`disk 'd' at ${file}: it is`));
      const verify = await env.run(["storage", "verify", vm]);
      assert.equal(verify.code, 1, verify.stdout);
      assert.match(verify.stdout, /problem: .*wrong size/);
    }
    assert.equal((await Deno.stat(empty)).size, 0, "the file was left as it was");
    await add("t0", theirs);
    const started = await env.run(["start", "t0", "--wait-for", "process"]);
    assert.equal(started.code, 0, started.stderr);
    await env.ok(["stop", "t0", "--force"]);
  });
});

Deno.test("a first start killed after it made the root overlay leaves it recorded: storage orphaned never lists it", async () => {
  await withEnv(async (env) => {
    const base = join(env.root, "base.qcow2");
    await qemuImg("create", "-q", "-f", "qcow2", base, "32M");
    await env.ok(["add", await guestConfig(env, { name: "o1", extra: `image: ${base}` })]);
    await killStartWhileCreating(env, "o1", { after: true });
    const overlay = join(
      env.dataDir,
      "disks",
      (await env.status("o1")).id,
      "image-overlay.qcow2",
    );
    assert.ok((await createdFiles(env, "o1")).includes(overlay), "the overlay was not recorded");
    const started = await env.run(["start", "o1", ...WAIT_READY]);
    assert.equal(started.code, 0, started.stderr);
    assert.ok(exists(overlay));
    assert.deepEqual(await createdFiles(env, "o1"), [overlay]);
    const orphaned = JSON.parse(await env.ok(["storage", "orphaned", "--json"]));
    assert.deepEqual(orphaned, [], JSON.stringify(orphaned));
    await env.ok(["stop", "o1", "--force"]);
  });
});

Deno.test("storage orphaned never lists a running VM's root overlay, even one an older qvm left unrecorded", async () => {
  await withEnv(async (env) => {
    const base = join(env.root, "base.qcow2");
    await qemuImg("create", "-q", "-f", "qcow2", base, "32M");
    const id =
      (await env.ok(["add", await guestConfig(env, { name: "o2", extra: `image: ${base}` })]))
        .trim();
    // The overlay a start killed between making it and recording it (older qvm) leaves.
    const overlay = join(env.dataDir, "disks", id, "image-overlay.qcow2");
    await Deno.mkdir(join(env.dataDir, "disks", id), { recursive: true, mode: 0o700 });
    await qemuImg("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay);
    assert.deepEqual(JSON.parse(await env.ok(["storage", "orphaned", "--json"])), []);
    await env.ok(["start", "o2", ...WAIT_READY]);
    assert.deepEqual(JSON.parse(await env.ok(["storage", "orphaned", "--json"])), []);
    assert.deepEqual(await createdFiles(env, "o2"), [overlay], "the start recorded it");
    await env.ok(["stop", "o2", "--force"]);
  });
});
