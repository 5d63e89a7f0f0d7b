/**
 * Every wait ends at once, exit 1, when QEMU sits in a fault state, and says how to run the VM
 * without KVM when KVM is what failed. On the machines these tests run on, `/dev/kvm` opens but a
 * KVM guest dies in its bootloader with an emulation failure (run state `internal-error`) within
 * seconds: the Debian cloud image (never booted here: it faults before its kernel runs) under
 * `accel: kvm` is such a guest. The tiny test guest only hangs under KVM, it does not fault.
 */
import assert from "node:assert/strict";
import { cloudGuestReady, ensureCloudGuest } from "../fixture/cloud_guest.ts";
import { pidsMentioning, withEnv } from "../helpers/qvm.ts";

function kvmOpens(): boolean {
  try {
    Deno.openSync("/dev/kvm", { read: true, write: true }).close();
    return true;
  } catch {
    return false;
  }
}

const kvm = kvmOpens();
const guest = Deno.uid() === 0 || await cloudGuestReady();
if (!kvm) console.error("skipped: the KVM fault tests need a /dev/kvm that opens read/write");
if (!guest) console.error("skipped: the KVM fault tests need the cached Debian cloud guest");

const HINT =
  /KVM failed to run the guest \(QEMU run state internal-error\); set accel tcg in the config/;

Deno.test({
  name:
    "a KVM fault ends start --wait-for ssh and serial, and wait --for agent and ssh, at once with exit 1 and the accel tcg hint",
  ignore: !kvm || !guest,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { image } = await ensureCloudGuest();
    await withEnv(async (env) => {
      const config = await env.file(
        "kvm.yaml",
        [
          "name: kvm1",
          "memory: 256M",
          "arguments:",
          "  - accel: kvm",
          `image: ${image}`,
          "network:",
          "  ports: ['auto:22']",
          "guest_agent: true",
          "",
        ].join("\n"),
      );
      await env.ok(["add", config]);
      const timed = async (args: string[]) => {
        const began = Date.now();
        const result = await env.run(args);
        return { ...result, seconds: (Date.now() - began) / 1000 };
      };

      const ssh = await timed(["start", "kvm1", "--wait-for", "ssh", "--timeout", "90"]);
      if (ssh.code === 0) {
        // KVM runs guests on this host: there is no fault to see.
        console.error("KVM runs guests here: the fault path cannot be shown on this host");
        await env.ok(["stop", "kvm1", "--force"]);
        return;
      }
      assert.equal(ssh.code, 1, ssh.stderr);
      assert.match(ssh.stderr, HINT);
      assert.ok(ssh.seconds < 60, `start --wait-for ssh took ${ssh.seconds} s`);
      assert.deepEqual(pidsMentioning(env.root), [], "the failed start left no QEMU");

      // A fault that comes while `wait` already waits on the guest agent.
      await env.ok(["start", "kvm1", "--wait-for", "process"]);
      const agent = await timed(["wait", "kvm1", "--for", "agent", "--timeout", "90"]);
      assert.equal(agent.code, 1, agent.stderr);
      assert.match(agent.stderr, /VM 'kvm1' cannot reach agent: /);
      assert.match(agent.stderr, HINT);
      assert.ok(agent.seconds < 60, `wait --for agent took ${agent.seconds} s`);
      const listed = JSON.parse(await env.ok(["ls", "--json"]));
      assert.equal(listed[0].status, "internal-error");
      const waitSsh = await env.run(["wait", "kvm1", "--for", "ssh", "--timeout", "30"]);
      assert.equal(waitSsh.code, 1, waitSsh.stderr);
      assert.match(waitSsh.stderr, HINT);
      await env.ok(["stop", "kvm1", "--force"]);

      const serial = await timed([
        "start",
        "kvm1",
        "--wait-for",
        "serial:NEVER",
        "--timeout",
        "90",
      ]);
      assert.equal(serial.code, 1, serial.stderr);
      assert.match(serial.stderr, HINT);
      assert.ok(serial.seconds < 60, `start --wait-for serial took ${serial.seconds} s`);
    });
  },
});
