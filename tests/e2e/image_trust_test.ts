/**
 * Images are untrusted files: the header of a qcow2 image may name any host file as its backing
 * file (or external data file), which the guest would then read. qvm refuses such an `image:` or
 * qcow2 disk at add and at start (exit 3, naming the file) unless the config names that file
 * itself (`allowed_backing_files`, a disk's `backing_file`), and opens every image by a pinned
 * format, never a guessed one. Real qemu-img, real QEMU (the busybox test guest).
 */
import assert from "node:assert/strict";
import { type QvmEnv, type QvmResult, withEnv } from "../helpers/qvm.ts";
import { guestConfig, WAIT_READY } from "../helpers/guest.ts";

async function qemuImg(args: string[]): Promise<string> {
  const out = await new Deno.Command("qemu-img", { args, stdout: "piped", stderr: "piped" })
    .output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

/** A host file the guest must never see (stands in for /etc/shadow). */
async function secretFile(env: QvmEnv): Promise<string> {
  return await env.file("secret.txt", "root:$6$not-for-the-guest:19000:0:99999:7:::\n");
}

/** `qemu-img create -f qcow2 -b BACKING -F raw FILE 1M`: a qcow2 whose header points at BACKING. */
async function pointingAt(file: string, backing: string): Promise<string> {
  await qemuImg(["create", "-q", "-f", "qcow2", "-b", backing, "-F", "raw", file, "1M"]);
  return file;
}

function refused(result: QvmResult, ...names: string[]): void {
  assert.equal(result.code, 3, result.stderr);
  assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
  for (const name of names) assert.ok(result.stderr.includes(name), result.stderr);
}

Deno.test("an image whose header names another host file is refused at add and at start, exit 3", async () => {
  await withEnv(async (env) => {
    const secret = await secretFile(env);
    const evil = await pointingAt(`${env.root}/evil.qcow2`, secret);
    const config = await guestConfig(env, { name: "evil", extra: `image: ${evil}` });
    const add = await env.run(["add", config]);
    refused(add, "evil.qcow2", secret);
    assert.match(add.stderr, /has a backing file, '.*secret\.txt', that the config does not name/);
    assert.deepEqual(JSON.parse(env.snapshot() || "[]"), [], "no VM defined");
    const flag = await env.run(["add", "--name", "evil2", "--image", evil]);
    refused(flag, "evil.qcow2", secret);

    // Defined with a clean image that is replaced afterwards: the start reads the chain again.
    const clean = `${env.root}/clean.qcow2`;
    await qemuImg(["create", "-q", "-f", "qcow2", clean, "8M"]);
    const id =
      (await env.ok(["add", await guestConfig(env, { name: "later", extra: `image: ${clean}` })]))
        .trim();
    await Deno.remove(clean);
    await pointingAt(clean, secret);
    const start = await env.run(["start", "later"]);
    refused(start, "clean.qcow2", secret);
    await assert.rejects(() => Deno.stat(`${env.dataDir}/disks/${id}`), Deno.errors.NotFound);
    assert.equal((await env.status("later")).status, "created");
  });
});

Deno.test({
  name: "allowed_backing_files lets an image's chain name a file; the overlay pins every format",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withEnv(async (env) => {
      const base = `${env.root}/base.qcow2`;
      await qemuImg(["create", "-q", "-f", "qcow2", base, "16M"]);
      const top = `${env.root}/top.qcow2`;
      await qemuImg(["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top]);
      const refusedAdd = await env.run([
        "add",
        await guestConfig(env, { name: "t0", extra: `image: ${top}` }),
      ]);
      refused(refusedAdd, "top.qcow2", "base.qcow2");
      const extra = `image: ${top}\nallowed_backing_files: [./base.qcow2]`;
      const id = (await env.ok(["add", await guestConfig(env, { name: "t1", extra })])).trim();
      const config = JSON.parse(await env.ok(["inspect", "t1", "--json"])).config;
      assert.equal(config.image_format, "qcow2");
      assert.deepEqual(config.allowed_backing_files, [base]);
      await env.ok(["start", "t1", ...WAIT_READY]);
      const overlay = JSON.parse(
        await qemuImg([
          "info",
          "-U",
          "--output=json",
          "-f",
          "qcow2",
          `${env.dataDir}/disks/${id}/image-overlay.qcow2`,
        ]),
      );
      assert.equal(overlay["backing-filename"], top);
      assert.equal(overlay["backing-filename-format"], "qcow2");
      await env.ok(["stop", "t1", "--force"]);
    });
  },
});

Deno.test({
  name: "an image's format is pinned when the VM is defined: a raw image stays raw",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withEnv(async (env) => {
      const image = `${env.root}/plain.img`;
      await Deno.writeFile(image, new Uint8Array(1 << 20));
      const id =
        (await env.ok(["add", await guestConfig(env, { name: "r1", extra: `image: ${image}` })]))
          .trim();
      assert.equal(
        JSON.parse(await env.ok(["inspect", "r1", "--json"])).config.image_format,
        "raw",
      );
      // The file now looks like a qcow2 pointing elsewhere: it is still opened as raw, so its
      // header is data to the guest, not a pointer to another file.
      await Deno.remove(image);
      await pointingAt(image, await secretFile(env));
      await env.ok(["start", "r1", ...WAIT_READY]);
      const overlay = JSON.parse(
        await qemuImg([
          "info",
          "-U",
          "--output=json",
          "-f",
          "qcow2",
          `${env.dataDir}/disks/${id}/image-overlay.qcow2`,
        ]),
      );
      assert.equal(overlay["backing-filename-format"], "raw");
      await env.ok(["stop", "r1", "--force"]);

      // image_format says so explicitly; an image in another format is refused with the fix.
      const vmdk = `${env.root}/disk.vmdk`;
      await qemuImg(["create", "-q", "-f", "vmdk", vmdk, "1M"]);
      const other = await env.run(["add", "--name", "v1", "--image", vmdk]);
      refused(other, "disk.vmdk");
      assert.match(other.stderr, /vmdk format; .*qemu-img convert/);
      const bad = await env.run([
        "add",
        await env.file("f.yaml", `image: ${vmdk}\nimage_format: vmdk\n`),
      ]);
      refused(bad, "image_format 'vmdk'");
    });
  },
});

Deno.test("a qcow2 disk whose header names another file, or keeps its data in one, is refused at add and start", async () => {
  await withEnv(async (env) => {
    const secret = await secretFile(env);
    const evil = await pointingAt(`${env.root}/evil.qcow2`, secret);
    const disk = (file: string) => `storage:\n  - {name: data, file: ${file}}`;
    refused(
      await env.run(["add", await guestConfig(env, { name: "s1", extra: disk(evil) })]),
      "disk 'data'",
      "evil.qcow2",
      secret,
    );
    const external = `${env.root}/external.qcow2`;
    await qemuImg([
      "create",
      "-q",
      "-f",
      "qcow2",
      "-o",
      `data_file=${secret},data_file_raw=on`,
      external,
      "1M",
    ]);
    const data = await env.run([
      "add",
      await guestConfig(env, { name: "s2", extra: disk(external) }),
    ]);
    refused(data, "external.qcow2", secret);
    assert.match(data.stderr, /keeps its data in another file/);
    // A disk's own backing_file is named by the config: its overlay may use it...
    const named =
      `storage:\n  - {name: data, file: ${env.root}/own.qcow2, backing_file: ${env.root}/b.qcow2}`;
    await qemuImg(["create", "-q", "-f", "qcow2", `${env.root}/b.qcow2`, "1M"]);
    await env.ok(["add", await guestConfig(env, { name: "s3", extra: named })]);
    // ...and a chain behind it that nothing names is refused, before the disk is made.
    await Deno.remove(`${env.root}/b.qcow2`);
    await pointingAt(`${env.root}/b.qcow2`, secret);
    refused(await env.run(["start", "s3"]), "b.qcow2", secret);
    await assert.rejects(() => Deno.stat(`${env.root}/own.qcow2`), Deno.errors.NotFound);
    // A disk defined clean whose file is swapped for a pointing one is refused at start.
    await qemuImg(["create", "-q", "-f", "qcow2", `${env.root}/swap.qcow2`, "1M"]);
    await env.ok([
      "add",
      await guestConfig(env, { name: "s4", extra: disk(`${env.root}/swap.qcow2`) }),
    ]);
    await Deno.remove(`${env.root}/swap.qcow2`);
    await pointingAt(`${env.root}/swap.qcow2`, secret);
    refused(await env.run(["start", "s4"]), "swap.qcow2", secret);
    assert.equal((await env.status("s4")).status, "created");
  });
});
