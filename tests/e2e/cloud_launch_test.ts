/**
 * `qvm launch URL` end to end with the Debian cloud guest served from a local HTTP server with a
 * SHA256SUMS beside it: corrupted downloads (a wrong checksum, a transfer cut short) are refused
 * with nothing cached and no VM; then one launch (no YAML, no --accel: KVM when it works, TCG
 * when it faults) resumes the cut download, verifies it, boots the guest and waits for SSH. The
 * guest boots once (about a minute under TCG); every later check is a step on that VM (ssh, an
 * 8 MB file copied in and out, `ssh-config` read by plain ssh and scp, a second VM from the
 * cached image): add new ones before "stop".
 */
import assert from "node:assert/strict";
import { cloudGuestReady, ensureCloudGuest } from "../fixture/cloud_guest.ts";
import { exists, QvmEnv } from "../helpers/qvm.ts";
import { serveImages, sha256OfFile } from "../helpers/image_server.ts";

function randomBytes(count: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(count);
  for (let i = 0; i < count; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
}

// Building the guest needs root (mmdebstrap); without root and without a cached guest, skip.
const canRun = Deno.uid() === 0 || await cloudGuestReady();

Deno.test({
  name: "launch URL: a served cloud image, verified and cached, boots to SSH without a config file",
  ignore: !canRun,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const guest = await ensureCloudGuest();
    const sum = await sha256OfFile(guest.image);
    const size = (await Deno.stat(guest.image)).size;
    const encode = (text: string) => new TextEncoder().encode(text);
    const server = serveImages({
      "/cloud/debian12.qcow2": { file: guest.image },
      "/cloud/SHA256SUMS": { bytes: encode(`${sum}  debian12.qcow2\n`) },
      "/bad/debian12.qcow2": { file: guest.image },
      "/bad/SHA256SUMS": { bytes: encode(`${"0".repeat(64)}  debian12.qcow2\n`) },
    });
    const url = `${server.base}/cloud/debian12.qcow2`;
    const env = await QvmEnv.create();
    const nothingLeft = async () => {
      assert.deepEqual(JSON.parse(await env.ok(["image", "ls", "--json"])).images, []);
      assert.deepEqual(JSON.parse(await env.ok(["ls", "--json"])), [], "no VM is defined");
    };
    let vm = "";
    let image = "";
    try {
      await t.step(
        "a download whose checksum does not match: exit 3, nothing cached, no VM",
        async () => {
          const bad = await env.run(["launch", `${server.base}/bad/debian12.qcow2`]);
          assert.equal(bad.code, 3, bad.stderr);
          assert.match(
            bad.stderr,
            /checksum mismatch .* the download was deleted and nothing was cached/,
          );
          await nothingLeft();
        },
      );

      const cut = 64 << 20;
      await t.step("a download cut short: exit 3, nothing cached, no VM", async () => {
        server.cutAfter.set("/cloud/debian12.qcow2", cut);
        const short = await env.run(["launch", url]);
        server.cutAfter.delete("/cloud/debian12.qcow2");
        assert.equal(short.code, 3, short.stderr);
        assert.match(short.stderr, new RegExp(`ended after ${cut} of ${size} bytes`));
        await nothingLeft();
      });

      await t.step(
        "launch URL resumes the download, verifies it and waits until SSH answers",
        async () => {
          const since = Date.now();
          const launched = await env.run([
            "launch",
            url,
            "--user",
            "tester",
            "--disk-size",
            "4G",
            "--timeout",
            "900",
            "--json",
          ]);
          const seconds = Math.round((Date.now() - since) / 1000);
          console.error(`cloud launch: launch URL to SSH took ${seconds} s\n${launched.stderr}`);
          assert.equal(launched.code, 0, launched.stderr);
          const out = JSON.parse(launched.stdout);
          vm = out.name;
          image = out.image.path;
          assert.match(vm, /^debian12-[0-9a-f]{4}$/);
          assert.equal(out.image.id, sum.slice(0, 12));
          assert.deepEqual(
            server.requests.filter((r) => r.path === "/cloud/debian12.qcow2").map((r) => r.range),
            [null, `bytes=${cut}-`],
            "the second launch resumed the cut download",
          );
          if (/KVM failed to run the guest/.test(launched.stderr)) {
            // This host's KVM faults: the VM was started again under TCG, and keeps it.
            const config = JSON.parse(JSON.parse(env.snapshot())[0].config_data);
            assert.deepEqual(config.arguments.at(-1), { accel: "tcg" });
            assert.equal(out.tcg_fallback, true);
          }
        },
      );

      await t.step("ssh VM -- true", async () => {
        const ssh = await env.run(["ssh", vm, "--", "true"]);
        assert.equal(ssh.code, 0, ssh.stderr);
        const user = await env.run(["ssh", vm, "--", "id", "-un"]);
        assert.equal(user.stdout.trim(), "tester");
      });

      await t.step("the root disk is --disk-size big", async () => {
        const sectors = await env.run(["ssh", vm, "--", "cat", "/sys/block/vda/size"]);
        assert.equal(sectors.code, 0, sectors.stderr);
        assert.equal(Number(sectors.stdout.trim()) * 512, 4 * 1024 ** 3);
      });

      await t.step("image ls shows the cached image and its VM; image rm refuses it", async () => {
        const ls = JSON.parse(await env.ok(["image", "ls", "--json"]));
        assert.equal(ls.images.length, 1);
        assert.equal(ls.images[0].sha256, sum);
        assert.equal(ls.images[0].path, image);
        assert.deepEqual(ls.images[0].vms, [vm]);
        assert.equal(ls.images[0].verified, `sha256 listed in ${server.base}/cloud/SHA256SUMS`);
        assert.deepEqual(ls.partial, []);
        const rm = await env.run(["image", "rm", sum.slice(0, 12)]);
        assert.equal(rm.code, 3);
        assert.match(rm.stderr, new RegExp(`is the base of VM '${vm}': remove it first`));
        assert.ok(exists(image));
      });

      const work = `${env.root}/files`;
      const big = `${work}/big.bin`;
      await t.step("cp an 8 MB random file in and out through the agent: identical", async () => {
        await Deno.mkdir(work);
        await Deno.writeFile(big, randomBytes(8 << 20));
        const sum = await sha256OfFile(big);
        const cpIn = await env.run(["cp", big, `${vm}:/tmp/`, "--json"]);
        assert.equal(cpIn.code, 0, cpIn.stderr);
        const copied = JSON.parse(cpIn.stdout);
        assert.deepEqual([copied.via, copied.files, copied.bytes], ["agent", 1, 8 << 20]);
        const inGuest = await env.run(["ssh", vm, "--", "sha256sum", "/tmp/big.bin"]);
        assert.equal(inGuest.code, 0, inGuest.stderr);
        assert.equal(inGuest.stdout.split(" ")[0], sum, "the guest holds the same bytes");
        const cpOut = await env.run(["cp", `${vm}:/tmp/big.bin`, `${work}/back.bin`]);
        assert.equal(cpOut.code, 0, cpOut.stderr);
        assert.equal(await sha256OfFile(`${work}/back.bin`), sum);
      });

      await t.step("ssh-config used by plain ssh -F and scp -F, both ways", async () => {
        const config = `${work}/vms.ssh`;
        await Deno.writeTextFile(config, await env.ok(["ssh-config"]));
        const openssh = async (program: string, args: string[]) => {
          const out = await new Deno.Command(program, { args: ["-F", config, ...args] }).output();
          const text = new TextDecoder();
          assert.equal(out.code, 0, `${program} ${args.join(" ")}: ${text.decode(out.stderr)}`);
          return text.decode(out.stdout);
        };
        await openssh("ssh", [vm, "true"]);
        await openssh("scp", [big, `${vm}:/tmp/scp.bin`]);
        const inGuest = await openssh("ssh", [vm, "sha256sum", "/tmp/scp.bin"]);
        assert.equal(inGuest.split(" ")[0], await sha256OfFile(big));
        await openssh("scp", [`${vm}:/tmp/scp.bin`, `${work}/scp.back`]);
        assert.equal(await sha256OfFile(`${work}/scp.back`), await sha256OfFile(big));
      });

      await t.step(
        "a second VM from the same URL uses the cached image: no second download",
        async () => {
          const downloads = () =>
            server.requests.filter((r) => r.path === "/cloud/debian12.qcow2").length;
          const before = downloads();
          // Only QEMU's process is awaited and then killed: no second cloud boot.
          const second = await env.run([
            "launch",
            url,
            "--memory",
            "256M",
            "--accel",
            "tcg",
            "--wait-for",
            "process",
            "--json",
          ]);
          assert.equal(second.code, 0, second.stderr);
          const out = JSON.parse(second.stdout);
          assert.equal(out.image.path, image);
          assert.equal(downloads(), before, "the image was not downloaded again");
          await env.ok(["stop", out.name, "--force"]);
          const ls = JSON.parse(await env.ok(["image", "ls", "--json"]));
          assert.equal(ls.images.length, 1);
          assert.deepEqual(ls.images[0].vms.toSorted(), [vm, out.name].toSorted());
          await env.ok(["rm", out.name, "--delete-storage"]);
          assert.ok(exists(image), "the cached image stays for the first VM");
        },
      );

      // Steps on the running VM go above this line.

      await t.step("stop, rm, and then image rm removes the cached image", async () => {
        const stopped = await env.run(["stop", vm, "--timeout", "120"]);
        assert.equal(stopped.code, 0, stopped.stderr);
        await env.ok(["rm", vm, "--delete-storage"]);
        const rm = await env.run(["image", "rm", url]);
        assert.equal(rm.code, 0, rm.stderr);
        assert.ok(!exists(image));
        await nothingLeft();
      });
    } finally {
      await server.close();
      await env.cleanup();
    }
  },
});
