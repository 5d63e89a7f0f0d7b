/**
 * A real Debian 12 cloud guest end to end, booted once under TCG (about a minute here): a config
 * with only `image:` (the cached base image, which boots by its own bootloader), a port forward
 * and cloud_init, besides name, size and the accelerator →
 * `start --wait-for ssh` → `ssh` runs a command → `exec` through the guest agent passes output
 * and exit codes through → `ip` shows the DHCP address → a live snapshot with the guest's file
 * systems frozen, and its load thawed → `stop` ends at the ACPI step → `rm`.
 */
import assert from "node:assert/strict";
import { cloudGuestReady, ensureCloudGuest } from "./fixture/cloud_guest.ts";
import { withEnv } from "./helpers/qvm.ts";
import { agentFreezeStatus } from "../src/cloud/agent.ts";

// Building the guest needs root (mmdebstrap); without root and without a cached guest, skip.
const canRun = Deno.uid() === 0 || await cloudGuestReady();

Deno.test({
  name: "a Debian cloud guest: start --wait-for ssh, ssh, exec, ip, frozen snapshot, stop by ACPI",
  ignore: !canRun,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const guest = await ensureCloudGuest();
    await withEnv(async (env) => {
      const keyDir = `${env.root}/keys`;
      await Deno.mkdir(keyDir);
      const keygen = await new Deno.Command("ssh-keygen", {
        args: ["-q", "-t", "ed25519", "-N", "", "-f", `${keyDir}/id_ed25519`],
      }).output();
      assert.ok(keygen.success);
      const config = await env.file(
        "cloud1.yaml",
        [
          "name: cloud1",
          "memory: 1G",
          "cpu: 2",
          // KVM does not run guests on the test machines: TCG only, no KVM attempt first.
          "arguments:",
          "  - accel: tcg",
          // The image boots by itself (its own bootloader): no kernel, initrd or append here.
          `image: ${guest.image}`,
          "network:",
          "  ports: ['auto:22']",
          "cloud_init:",
          "  user: tester",
          "  ssh_authorized_keys: [keys/id_ed25519.pub]",
          "",
        ].join("\n"),
      );
      await env.ok(["add", config]);
      const since = Date.now();
      const started = await env.run(["start", "cloud1", "--wait-for", "ssh", "--timeout", "600"]);
      console.error(
        `cloud guest: start --wait-for ssh took ${Math.round((Date.now() - since) / 1000)} s`,
      );
      assert.equal(
        started.code,
        0,
        started.stderr + (await env.run(["logs", "cloud1"])).stdout.slice(-3000),
      );

      const hostname = await env.run(["ssh", "cloud1", "--", "cat", "/etc/hostname"]);
      assert.equal(hostname.code, 0, hostname.stderr);
      assert.equal(hostname.stdout.trim(), "cloud1");
      const failing = await env.run(["ssh", "cloud1", "--", "exit 5"]);
      assert.equal(failing.code, 5, "ssh passes the remote exit code through");

      const user = await env.run(["exec", "cloud1", "--", "id", "-un"]);
      assert.equal(user.code, 0, user.stderr);
      assert.equal(user.stdout.trim(), "tester", "exec runs as the cloud_init user");
      const root = await env.run(["exec", "cloud1", "--root", "--", "id", "-un"]);
      assert.equal(root.stdout.trim(), "root", "--root runs as the agent does");
      const owner = await env.run(["exec", "cloud1", "--", "stat", "-c", "%U", "/home/tester"]);
      assert.equal(owner.stdout.trim(), "tester", "cloud-init made the user");
      const code = await env.run([
        "exec",
        "cloud1",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
      ]);
      assert.deepEqual([code.code, code.stdout, code.stderr], [7, "out\n", "err\n"]);
      const input = await env.run(["exec", "cloud1", "--stdin", "--", "cat"], {
        stdin: "piped in\n",
      });
      assert.equal(input.stdout, "piped in\n");

      // The image's own bootloader booted the root on its overlay, the first virtio disk.
      const rootFs = await env.run(["exec", "cloud1", "--", "findmnt", "-no", "SOURCE", "/"]);
      assert.equal(rootFs.stdout.trim(), "/dev/vda2", rootFs.stderr);
      const ip = await env.run(["ip", "cloud1"]);
      assert.equal(ip.code, 0, ip.stderr);
      assert.match(ip.stdout, /^eth0 10\.0\.2\.15\/24$/m);
      const status = JSON.parse(await env.ok(["status", "cloud1", "--json"]));
      assert.ok(status.addresses.some((a: { address: string }) => a.address === "10.0.2.15"));
      // A live snapshot freezes the guest's file systems around the save and thaws them after;
      // loading it brings back a guest saved frozen, which qvm thaws.
      const socket = `${env.runtimeDir}/${status.id}.ga`;
      const snap = await env.run(["snapshot", "create", "cloud1", "s1", "--live", "--json"]);
      assert.equal(snap.code, 0, snap.stderr);
      const quiesce = JSON.parse(snap.stdout).quiesce;
      assert.ok(quiesce.frozen >= 1, `froze ${quiesce.frozen} file systems`);
      assert.equal(await agentFreezeStatus(socket, 10_000), "thawed");
      const load = await env.run(["snapshot", "load", "cloud1", "s1"]);
      assert.equal(load.code, 0, load.stderr);
      assert.match(load.stderr, /thawed the guest's file systems/);
      assert.equal(await agentFreezeStatus(socket, 10_000), "thawed");
      const ports = JSON.parse(await env.ok(["ports", "cloud1", "--json"]));
      assert.equal(ports.forwards[0].guest_port, 22);
      assert.deepEqual(status.forwards[0].host, ports.forwards[0].host_port);

      // What the guest writes is what a full clone gets.
      const wrote = await env.run([
        "ssh",
        "cloud1",
        "--",
        "sh -c 'echo written-before-clone > /home/tester/mark && sync'",
      ]);
      assert.equal(wrote.code, 0, wrote.stderr);

      const stopAt = Date.now();
      const stopped = await env.run(["stop", "cloud1", "--timeout", "120"]);
      console.error(`cloud guest: stop took ${Math.round((Date.now() - stopAt) / 1000)} s`);
      assert.equal(stopped.code, 0, stopped.stderr);
      assert.match(stopped.stdout, /\(ACPI power-off\)/, "the guest powered off on ACPI");
      const cloned = JSON.parse(await env.ok(["clone", "cloud1", "cloud2", "--json"]));
      assert.equal(cloned.copied.length, 1);
      const { from, to } = cloned.copied[0];
      const compare = await new Deno.Command("qemu-img", {
        args: ["compare", "-f", "qcow2", "-F", "qcow2", from, to],
        stdout: "piped",
      }).output();
      assert.equal(compare.code, 0, "the clone's disk differs from what the guest wrote");
      const copy = JSON.parse(
        new TextDecoder().decode(
          (await new Deno.Command("qemu-img", {
            args: ["info", "--output=json", to],
            stdout: "piped",
          })
            .output()).stdout,
        ),
      );
      assert.equal(copy["backing-filename"], guest.image, "the copy is an overlay of the image");
      await env.ok(["rm", "cloud2", "--delete-storage"]);
      assert.ok((await Deno.stat(guest.image)).isFile);
      await env.ok(["rm", "cloud1"]);
    });
  },
});
