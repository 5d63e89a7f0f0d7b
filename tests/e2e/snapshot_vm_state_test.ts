/**
 * Snapshots with VM state on a running guest never split the guest's memory from its disks: they
 * cover every writable drive or are refused, and a load QEMU fails (or dies in) is reported with
 * what is safe to do next. Real QEMU under TCG.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { WAIT_READY } from "../helpers/guest.ts";
import {
  addVm,
  fails,
  imageSnapshotNames,
  markerInGuest,
  qmp,
  serial,
  tool,
} from "../helpers/snapshot.ts";

/** Lists each drive's snapshots as `name:vm_state_size>0`, read by qvm. */
async function listed(env: QvmEnv, vm: string): Promise<Record<string, string[]>> {
  const listing = JSON.parse(await env.ok(["snapshot", "list", vm, "--json"]));
  const out: Record<string, string[]> = {};
  for (const d of listing.drives) {
    out[d.drive] = d.snapshots.map((s: { name: string; vm_state_size: number }) =>
      `${s.name}:${s.vm_state_size > 0 ? "state" : "disk"}`
    );
  }
  return out;
}

async function guestStatus(env: QvmEnv, vm: string): Promise<{ status: string; qemu?: string }> {
  const status = await env.status(vm);
  return { status: status.status, qemu: status.qemu_status };
}

async function writeMarker(env: QvmEnv, id: string): Promise<void> {
  await serial(env, id, { command: `echo QVM""MARK > /tmp/m; echo "RC=$?"`, until: /RC=0/ });
}

Deno.test("a snapshot with VM state must cover every writable drive: a, b (qcow2) and r (raw) are refused, so is --drive b", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(
      env,
      "abr",
      "[{name: a, size: 32M}, {name: b, size: 32M}, {name: r, type: raw, size: 8M}]",
    );
    await env.ok(["start", "abr", ...WAIT_READY]);

    for (const extra of [[], ["--live"], ["--overwrite"]]) {
      await fails(
        env,
        ["snapshot", "create", "abr", "m1", ...extra],
        3,
        /^qvm: drive 'r' is writable and raw, which cannot hold snapshots: a snapshot with VM state must include every writable drive, .*; make it read-only, convert it to qcow2, or take a disk-only snapshot \(no VM state\) with --disk-only$/m,
      );
    }
    for (const [drive, left] of [["b", "'a', 'r'"], ["a", "'b', 'r'"]]) {
      await fails(
        env,
        ["snapshot", "create", "abr", "m1", "--drive", drive],
        3,
        new RegExp(
          `^qvm: --drive ${drive} leaves out writable drives ${left} of VM 'abr': a snapshot ` +
            `with VM state must include every writable drive, .*; leave out --drive, or take a ` +
            `disk-only snapshot of '${drive}' with --disk-only$`,
          "m",
        ),
      );
    }
    assert.deepEqual(await imageSnapshotNames(vm.files.a), []);
    assert.deepEqual(await imageSnapshotNames(vm.files.b), []);

    // A disk-only snapshot is the explicit way: raw r is skipped (with a warning), no VM state.
    const diskOnly = await env.run(["snapshot", "create", "abr", "d1", "--disk-only"]);
    assert.equal(diskOnly.code, 0, diskOnly.stderr);
    assert.equal(
      diskOnly.stdout,
      "created snapshot 'd1' on a (live)\ncreated snapshot 'd1' on b (live)\n",
    );
    assert.match(
      diskOnly.stderr,
      /^qvm: warning: skipped raw drive 'r' \(snapshots need qcow2\)$/m,
    );
    assert.equal(
      await env.ok(["snapshot", "create", "abr", "d2", "--drive", "b", "--disk-only"]),
      "created snapshot 'd2' on b (live)\n",
    );
    assert.deepEqual(await listed(env, "abr"), { a: ["d1:disk"], b: ["d1:disk", "d2:disk"] });

    // Loading is refused by the same rule, before anything is rolled back.
    await fails(
      env,
      ["snapshot", "load", "abr", "d1"],
      3,
      /^qvm: drive 'r' is writable and raw, which cannot hold snapshots: a load with VM state must roll back every writable drive .*; make it read-only, convert it to qcow2, or stop the VM and load the snapshot offline \(disks only\)$/m,
    );
    await fails(
      env,
      ["snapshot", "load", "abr", "d2", "--drive", "b"],
      3,
      /^qvm: --drive b leaves out writable drives 'a', 'r' of VM 'abr': a load with VM state .*; leave out --drive, or stop the VM and load the snapshot offline \(disks only\)$/m,
    );
    await fails(
      env,
      ["snapshot", "load", "abr", "d1", "--disk-only"],
      3,
      /--disk-only is for 'snapshot create'|unknown option/,
    );
    assert.deepEqual(await guestStatus(env, "abr"), { status: "running", qemu: "running" });
  });
});

Deno.test("read-only drives, cdroms and virtfs shares do not count; a load leaving out a writable drive is refused", async () => {
  await withEnv(async (env) => {
    const iso = await env.file("cd.iso", "x".repeat(8192));
    const ro = join(env.root, "ro.raw");
    assert.equal((await tool("qemu-img", ["create", "-q", "-f", "raw", ro, "1M"])).code, 0);
    const vm = await addVm(env, "ab", {
      storage: "[{name: a, size: 32M}, {name: b, size: 32M}, " +
        `{name: share, type: virtfs, path: ${env.root}, mount_tag: share, security_model: none}]`,
      arguments: [
        `cdrom: ${iso}`,
        `drive: {file: ${ro}, format: raw, if: virtio, readonly: "on", id: rodisk}`,
      ],
    });
    await env.ok(["start", "ab", ...WAIT_READY]);

    assert.equal(
      await env.ok(["snapshot", "create", "ab", "m1"]),
      "created snapshot 'm1' on a (live, VM state)\ncreated snapshot 'm1' on b (live)\n",
    );
    assert.equal(
      await env.ok(["snapshot", "create", "ab", "clean"]),
      "created snapshot 'clean' on a (live, VM state)\ncreated snapshot 'clean' on b (live)\n",
    );
    await writeMarker(env, vm.id);

    for (const [drive, left] of [["b", "a"], ["a", "b"]]) {
      await fails(
        env,
        ["snapshot", "load", "ab", "m1", "--drive", drive],
        3,
        new RegExp(
          `^qvm: --drive ${drive} leaves out writable drive '${left}' of VM 'ab': a load with ` +
            "VM state must roll back every writable drive with the memory",
          "m",
        ),
      );
      await fails(
        env,
        ["snapshot", "create", "ab", "x", "--drive", drive],
        3,
        new RegExp(`^qvm: --drive ${drive} leaves out writable drive '${left}' of VM 'ab'`, "m"),
      );
    }
    // b's 'm1' replaced by a disk-only one taken later: it was never with a's memory.
    await env.ok(["snapshot", "delete", "ab", "m1", "--drive", "b"]);
    await env.ok(["snapshot", "create", "ab", "m1", "--drive", "b", "--disk-only"]);
    await fails(
      env,
      ["snapshot", "load", "ab", "m1"],
      3,
      /^qvm: snapshot 'm1' on drive 'b' was not taken together with its VM state on drive 'a': /m,
    );
    // Nothing was loaded: the marker written after the snapshots is still there.
    assert.deepEqual(await markerInGuest(env, vm.id), { rc: 0, seen: true });

    assert.equal(
      await env.ok(["snapshot", "load", "ab", "clean"]),
      "loaded snapshot 'clean' on a (live, VM state)\nloaded snapshot 'clean' on b (live)\n",
    );
    assert.deepEqual(await markerInGuest(env, vm.id), { rc: 1, seen: false });

    // Stopped, a snapshot is disk-only by nature: --drive picks one drive, no VM state involved.
    await env.ok(["stop", "ab", "--force"]);
    assert.equal(
      await env.ok(["snapshot", "load", "ab", "clean", "--drive", "b"]),
      "loaded snapshot 'clean' on b\n",
    );

    // A writable raw drive added since: a live load of 'clean' could not roll it back.
    await env.ok([
      "apply",
      "ab",
      await env.file("more.yaml", "storage: [{name: r, type: raw, size: 8M}]"),
    ]);
    await env.ok(["start", "ab", ...WAIT_READY]);
    await fails(
      env,
      ["snapshot", "load", "ab", "clean"],
      3,
      /^qvm: drive 'r' is writable and raw, which cannot hold snapshots: a load with VM state must roll back every writable drive .*stop the VM and load the snapshot offline \(disks only\)$/m,
    );
    assert.deepEqual(await guestStatus(env, "ab"), { status: "running", qemu: "running" });
  });
});

/** Writes 4 KiB of `pattern` at offset 0 of drive `drive`, through the VM's own QEMU (HMP qemu-io). */
async function writeInQemu(env: QvmEnv, id: string, options: { drive: string; pattern: string }) {
  await qmp(env, id, "human-monitor-command", {
    "command-line": `qemu-io ${options.drive} "write -P ${options.pattern} 0 4k"`,
  });
}

/** Fails the test unless the first 4 KiB of the image at `file` (not in use) are all `pattern`. */
async function assertPattern(file: string, pattern: string): Promise<void> {
  const args = ["-r", "-f", "qcow2", "-c", `read -P ${pattern} 0 4k`, file];
  const { code, out } = await tool("qemu-io", args);
  assert.equal(code, 0, out);
  assert.match(out, /^read 4096\/4096 bytes/m, out);
  assert.doesNotMatch(out, /fail/i, out);
}

Deno.test("a live load that QEMU fails says the drives were rolled back and never suggests resuming", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "grown", "[{name: hdd, size: 32M}]");
    await env.ok(["start", "grown", ...WAIT_READY]);
    await env.ok(["snapshot", "create", "grown", "small"]);
    await env.ok(["stop", "grown", "--force"]);
    await env.ok(["apply", "grown", "--memory", "256M"]);
    await env.ok(["start", "grown", ...WAIT_READY]);
    const hdd = { drive: "hdd" };
    await writeInQemu(env, vm.id, { ...hdd, pattern: "0xab" });
    await env.ok(["snapshot", "create", "grown", "big"]);
    await writeInQemu(env, vm.id, { ...hdd, pattern: "0xcd" });

    // 'small' was taken with 192M of RAM: QEMU rolls the drive back, then fails on the RAM.
    const failed =
      /^qvm: snapshot-load failed: .+; the drives of VM 'grown' were rolled back to 'small' but its memory was not, so the guest must not run on as it is: reset it \('qvm qmp run grown system_reset'\), stop it \('qvm stop grown'\), or load another snapshot \('qvm snapshot load grown OTHER'\)$/;
    const res = await env.run(["snapshot", "load", "grown", "small"]);
    assert.equal(res.code, 1, res.stderr);
    const [message, ...detail] = res.stderr.trim().split("\n");
    assert.match(message, failed);
    assert.doesNotMatch(res.stderr, /resume/);
    // QEMU's own reason, from its log, follows the one-line message.
    assert.match(detail.join("\n"), /mismatch: pc\.ram/);
    assert.deepEqual(await qmp(env, vm.id, "query-jobs"), []);
    assert.equal((await qmp<{ status: string }>(env, vm.id, "query-status")).status, "restore-vm");
    // Nor is that split state saved as a new snapshot with VM state.
    await fails(
      env,
      ["snapshot", "create", "grown", "split"],
      3,
      /^qvm: VM 'grown' is held stopped after a failed snapshot load: its memory does not match its drives/m,
    );

    // Loading another snapshot brings memory and drive back together, and the guest runs on.
    assert.equal(
      await env.ok(["snapshot", "load", "grown", "big"]),
      "loaded snapshot 'big' on hdd (live, VM state)\n",
    );
    assert.deepEqual(await guestStatus(env, "grown"), { status: "running", qemu: "running" });

    // Failed again, then stopped: the drive is found at 'small' (all zeros), not at 'big'.
    const again = await env.run(["snapshot", "load", "grown", "small"]);
    assert.equal(again.code, 1, again.stderr);
    assert.match(again.stderr.split("\n")[0], failed);
    await env.ok(["stop", "grown", "--timeout", "3"]);
    await assertPattern(vm.files.hdd, "0");
    await env.ok(["snapshot", "load", "grown", "big"]);
    await assertPattern(vm.files.hdd, "0xab");
  });
});

Deno.test("when QEMU dies during a live load, qvm says so instead of a later QMP error", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "dies", "[{name: hdd, size: 32M}]");
    await env.ok(["start", "dies", ...WAIT_READY]);
    await env.ok(["snapshot", "create", "dies", "s1"]);
    const pid = (await env.status("dies")).pid as number;

    // A second QMP client (the VM's status socket) kills QEMU once the load job runs.
    const { QmpClient } = await import("../../src/qemu/qmp.ts");
    const watcher = await QmpClient.connect(join(env.runtimeDir, `${vm.id}.mon`));
    let res;
    try {
      const killed = watcher.waitForEvent("JOB_STATUS_CHANGE", {
        since: watcher.events.length,
        timeoutMs: 120_000,
        match: (e) => e.data?.status === "running" && String(e.data?.id).startsWith("qvm-load-"),
      }).then(() => Deno.kill(pid, "SIGKILL"));
      res = await env.run(["snapshot", "load", "dies", "s1"]);
      await killed;
    } finally {
      watcher.close();
      await watcher.closed;
    }
    assert.equal(res.code, 1, res.stderr);
    const [message] = res.stderr.trim().split("\n");
    assert.match(
      message,
      /^qvm: QEMU exited during snapshot-load of snapshot 's1'( \(.+\))?: the VM is stopped; its drives may be partly rolled back to 's1': load 's1' offline \('qvm snapshot load dies s1'\) to put every drive back to it, or start it as it is$/,
    );
    assert.doesNotMatch(message, /query-status|QMP connection closed|resume/);
    assert.equal((await guestStatus(env, "dies")).status, "stopped");

    // The way out it names works.
    assert.equal(await env.ok(["snapshot", "load", "dies", "s1"]), "loaded snapshot 's1' on hdd\n");
  });
});
