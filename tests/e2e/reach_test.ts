/**
 * What a VM's config reaches, as the read-only commands show it: the files and port forwards its
 * own QEMU options name, `info` and `storage ls|verify` of a VM made from an `image:`, and guest
 * memory sizes no host can give.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withEnv } from "../helpers/qvm.ts";
import { guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { optionFiles, optionForwards } from "../../src/qemu/reach.ts";

const empty = { arguments: [], args: [] };

Deno.test("optionFiles: the files QEMU options name, which are disks and which QEMU writes", () => {
  const files = optionFiles({
    ...empty,
    arguments: [
      { drive: "file=/x/rw.img,format=raw,if=virtio" },
      { drive: { file: "/x/ro.img", readonly: "on" } },
      { drive: "file=/x/cd.iso,media=cdrom" },
      { hdb: "/x/hdb.img" },
      { kernel: "/x/vmlinuz" },
      { chardev: "file,id=log0,path=/x/serial.log" },
      { chardev: "socket,id=s0,path=/x/sock,server=on" },
      { blockdev: "driver=file,node-name=f0,filename=/x/bd.img,read-only=on" },
      { drive: "file=relative.img" },
    ],
    args: ["-serial", "file:/x/ttyS0.log", "-pflash", "/x/vars.fd", "/x/bare.img"],
  });
  assert.deepEqual(
    files.map((f) => [f.option, f.path, f.disk, f.writable, f.format ?? null]),
    [
      ["drive", "/x/rw.img", true, true, "raw"],
      ["drive", "/x/ro.img", true, false, null],
      ["drive", "/x/cd.iso", true, false, null],
      ["hdb", "/x/hdb.img", true, true, null],
      ["kernel", "/x/vmlinuz", false, false, null],
      ["chardev", "/x/serial.log", false, true, null],
      ["chardev", "/x/sock", false, false, null],
      ["blockdev", "/x/bd.img", true, false, null],
      ["serial", "/x/ttyS0.log", false, true, null],
      ["pflash", "/x/vars.fd", true, true, null],
      ["hda", "/x/bare.img", true, true, null],
    ],
  );
});

Deno.test("optionForwards: hostfwd= of -netdev user and -nic user, QEMU's empty address being all", () => {
  assert.deepEqual(
    optionForwards({
      arguments: [{ netdev: "user,id=n0,hostfwd=tcp::2222-:22,hostfwd=udp:127.0.0.1:5353-:53" }],
      args: ["-nic", "user,hostfwd=:10.0.0.1:8080-10.0.2.15:80", "-netdev", "tap,id=t0"],
    }),
    [
      { proto: "tcp", address: "0.0.0.0", host: 2222, guest: 22 },
      { proto: "udp", address: "127.0.0.1", host: 5353, guest: 53 },
      { proto: "tcp", address: "10.0.0.1", host: 8080, guest: 80 },
    ],
  );
  assert.deepEqual(optionForwards(empty), []);
});

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("qvm ports lists the forwards written in arguments and args, stopped and running", async () => {
  await withEnv(async (env) => {
    const [a, b] = [freePort(), freePort()];
    const config = await guestConfig(env, {
      name: "fw",
      extra: `  - netdev: user,id=n0,hostfwd=tcp:127.0.0.1:${a}-:22\n` +
        "  - device: virtio-net-pci,netdev=n0\n" +
        `args: ["-nic", "user,model=virtio-net-pci,hostfwd=udp:127.0.0.1:${b}-:53"]`,
    });
    await env.ok(["add", config]);
    for (const running of [false, true]) {
      if (running) await env.ok(["start", "fw", ...WAIT_READY]);
      const shown = JSON.parse(await env.ok(["ports", "fw", "--json"]));
      assert.equal(shown.running, running);
      assert.deepEqual(shown.forwards, [
        { proto: "tcp", host_address: "127.0.0.1", host_port: a, guest_port: 22 },
        { proto: "udp", host_address: "127.0.0.1", host_port: b, guest_port: 53 },
      ]);
      assert.equal(
        await env.ok(["ports", "fw"]),
        `127.0.0.1:${a} -> 22/tcp\n127.0.0.1:${b} -> 53/udp\n`,
      );
    }
    // The forward is QEMU's own: something listens there while the VM runs.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: a });
    conn.close();
    await env.ok(["stop", "fw", "--force"]);
  });
});

Deno.test("info and storage ls|verify show an image: VM's root overlay over its image, its forwards and cloud_init", async () => {
  await withEnv(async (env) => {
    const base = join(env.root, "base.qcow2");
    const made = await new Deno.Command("qemu-img", {
      args: ["create", "-q", "-f", "qcow2", base, "32M"],
    }).output();
    assert.ok(made.success);
    const config = await guestConfig(env, {
      name: "im",
      extra: `image: ${base}\nnetwork: {ports: ['auto:22', '8080:80']}\ncloud_init: {user: dev}`,
    });
    const id = (await env.ok(["add", config])).trim();
    const overlay = join(env.dataDir, "disks", id, "image-overlay.qcow2");

    const info = JSON.parse(await env.ok(["info", "im", "--json"]));
    assert.equal(info.image, base);
    assert.deepEqual(info.network, ["127.0.0.1:auto -> 22/tcp", "127.0.0.1:8080 -> 80/tcp"]);
    assert.equal(info.cloud_init, true);
    assert.deepEqual(info.storage, [{
      name: "qvm-root",
      type: "qcow2",
      file: overlay,
      size: null,
      interface: "virtio",
      backing_file: base,
    }]);
    const text = await env.ok(["info", "im"]);
    assert.match(text, new RegExp(`^image: ${base}$`, "m"));
    assert.match(text, /^network: user, forwards 127\.0\.0\.1:auto -> 22\/tcp, 127\.0\.0\.1:8080/m);
    assert.match(text, /^cloud_init: set$/m);
    assert.match(text, new RegExp(`^  qvm-root: qcow2 .* ${overlay} over ${base}$`, "m"));
    const plain = JSON.parse(
      await env.ok(["info", (await env.ok(["add", "--empty", "--name", "pl"])).trim(), "--json"]),
    );
    assert.deepEqual([plain.image, plain.network, plain.cloud_init], [null, null, false]);

    const before = JSON.parse(await env.ok(["storage", "ls", "im", "--json"]));
    assert.deepEqual(
      before.map((r: Record<string, unknown>) => [r.storage, r.path, r.state]),
      [["qvm-root", overlay, "missing"]],
    );
    const notYet = JSON.parse((await env.run(["storage", "verify", "im", "--json"])).stdout);
    assert.equal(notYet[0].result, "not_created");

    // Its first start makes the overlay (the guest boots from its kernel, not the image).
    await env.ok([
      "apply",
      "im",
      await env.file("nonet.yaml", "network: null\ncloud_init: null\n"),
    ]);
    await env.ok(["start", "im", ...WAIT_READY]);
    const rows = JSON.parse(await env.ok(["storage", "ls", "im", "--json"]));
    assert.equal(rows[0].state, "present");
    assert.equal(rows[0].backing_file, base);
    assert.equal(rows[0].virtual_size, 32 * 1024 * 1024);
    assert.match(await env.ok(["storage", "ls", "im"]), /\nim\s+qvm-root\s+qcow2\s+present\s/);
    const verify = await env.run(["storage", "verify", "im"]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /all 1 disks ok/);
    await env.ok(["stop", "im", "--force"]);
  });
});

Deno.test("add and apply refuse guest memory no host can give (exit 3, one line, nothing written)", async () => {
  await withEnv(async (env) => {
    for (const memory of ["99999999T", "17T", "16777217M"]) {
      const added = await env.run(["add", "--empty", "--name", "big", "--memory", memory]);
      assert.equal(added.code, 3, added.stderr);
      assert.match(added.stderr, new RegExp(`invalid memory '${memory}': more than 16T`));
      assert.equal(added.stderr.trim().split("\n").length, 1);
    }
    const viaOption = await env.run([
      "add",
      await env.file("m.yaml", "arguments: [{m: 99999999T}]\n"),
    ]);
    assert.equal(viaOption.code, 3, viaOption.stderr);
    assert.equal(env.snapshot(), "");
    await env.ok(["add", "--empty", "--name", "ok", "--memory", "16T"]);
    const before = env.snapshot();
    const applied = await env.run(["apply", "ok", "--memory", "99999999T"]);
    assert.equal(applied.code, 3, applied.stderr);
    assert.equal(env.snapshot(), before);
  });
});
