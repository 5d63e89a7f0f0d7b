import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { QvmEnv, withEnv } from "./helpers/qvm.ts";
import { guestConfig, WAIT_READY } from "./helpers/guest.ts";
import {
  formatDate,
  formatVmClock,
  parseSnapshots,
  planSteps,
  selectDrives,
  type SnapshotInfo,
  validateSnapshotName,
  vmStateDrive,
} from "../src/vm/_snapshot.ts";
import { diskLockPath } from "../src/vm/snapshot.ts";
import { formatListing, listingJson } from "../src/cli/snapshot.ts";
import { acquireLock } from "../src/vm/lock.ts";
import { vmPaths } from "../src/vm/paths.ts";
import { NotFoundError, UsageError } from "../src/errors.ts";
import type { StorageItem } from "../src/config/mod.ts";
import type { VmRecord } from "../src/state/mod.ts";

// ---------------------------------------------------------------------------------------------
// Pure core

const disk = (name: string, type: "qcow2" | "raw" = "qcow2"): StorageItem => ({
  name,
  type,
  size: "1G",
  interface: "virtio",
});
const share: StorageItem = {
  name: "share",
  type: "virtfs",
  path: "/srv",
  mount_tag: "srv",
  security_model: "none",
  readonly: false,
};

Deno.test("drive selection: every qcow2 drive, raw ones skipped; a named drive must be qcow2", () => {
  const storage = [disk("hdd"), disk("scratch", "raw"), share, disk("data")];
  const all = selectDrives("g", storage);
  assert.deepEqual(all.drives.map((d) => d.name), ["hdd", "data"]);
  assert.deepEqual(all.skipped.map((d) => d.name), ["scratch"]);
  assert.deepEqual(selectDrives("g", storage, "data").drives.map((d) => d.name), ["data"]);
  const cases: [StorageItem[], string | undefined, typeof UsageError, RegExp][] = [
    [storage, "scratch", UsageError, /^drive 'scratch' is raw: snapshots need qcow2$/],
    [
      storage,
      "nope",
      NotFoundError,
      /VM 'g' has no drive 'nope' \(its drives: hdd, scratch, data\)/,
    ],
    [storage, "share", UsageError, /storage 'share' of VM 'g' is a virtfs share, not a drive/],
    [
      [disk("r", "raw")],
      undefined,
      UsageError,
      /VM 'g' has no qcow2 drive to snapshot \(its drives: r;/,
    ],
    [[], undefined, UsageError, /VM 'g' has no qcow2 drive to snapshot \(it has no drives;/],
    [[], "hdd", NotFoundError, /VM 'g' has no drive 'hdd' \(it has no drives\)/],
  ];
  for (const [items, name, type, message] of cases) {
    assert.throws(() => selectDrives("g", items, name), (err: Error) => {
      assert.ok(err instanceof type, `${name}: ${err.name}`);
      assert.equal((err as UsageError).exitCode, 3);
      assert.match(err.message, message);
      return true;
    });
  }
});

Deno.test("snapshot names: no empty, spaced, dash-led or all-digit names", () => {
  for (const ok of ["before", "v1.2", "pre-upgrade_2024", "a".repeat(128), "1a"]) {
    validateSnapshotName(ok);
  }
  const bad: [string, RegExp][] = [
    ["", /it is empty/],
    ["two words", /spaces or control/],
    ["tab\there", /spaces or control/],
    ["-x", /starts with '-'/],
    ["42", /all digits/],
    ["a".repeat(129), /longer than 128/],
  ];
  for (const [name, message] of bad) {
    assert.throws(() => validateSnapshotName(name), (err: Error) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, new RegExp(`^invalid snapshot name '.*': .*${message.source}`));
      return true;
    });
  }
});

Deno.test("snapshot tables parse from qemu-img info JSON; no snapshots key means none", () => {
  const info = {
    format: "qcow2",
    snapshots: [{
      "vm-clock-nsec": 606326361,
      name: "t1",
      "date-sec": 1700000000,
      "date-nsec": 364169000,
      "vm-clock-sec": 4,
      id: "1",
      "vm-state-size": 96603861,
    }],
  };
  assert.deepEqual(parseSnapshots(info), [{
    name: "t1",
    id: "1",
    vmStateSize: 96603861,
    dateMs: 1700000000364,
    vmClockNs: 4606326361,
  }]);
  assert.deepEqual(parseSnapshots({ format: "qcow2" }), []);
  assert.deepEqual(parseSnapshots(undefined), []);
  assert.equal(formatVmClock(4606326361), "00:00:04.606");
  assert.equal(formatVmClock(3_723_004_000_000), "01:02:03.004");
  assert.match(formatDate(1700000000364), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
});

function snap(name: string, vmStateSize = 0): SnapshotInfo {
  return { name, id: "1", vmStateSize, dateMs: 0, vmClockNs: 0 };
}

Deno.test("plans: create refuses an existing name unless overwrite; load/delete need it everywhere", () => {
  const existing = new Map([["hdd", [snap("a"), snap("b"), snap("b")]], ["data", [snap("b")]]]);
  assert.deepEqual(planSteps("create", "new", { existing }), [
    { op: "create", drives: ["hdd", "data"], times: 1 },
  ]);
  assert.throws(
    () => planSteps("create", "a", { existing }),
    /^UsageError: snapshot 'a' already exists on drive 'hdd' \(--overwrite replaces it\)$/,
  );
  assert.deepEqual(planSteps("create", "b", { existing, overwrite: true }), [
    { op: "delete", drives: ["hdd", "data"], times: 2 },
    { op: "create", drives: ["hdd", "data"], times: 1 },
  ]);
  assert.deepEqual(planSteps("load", "b", { existing }), [
    { op: "load", drives: ["hdd", "data"], times: 1 },
  ]);
  assert.deepEqual(planSteps("delete", "b", { existing }), [
    { op: "delete", drives: ["hdd", "data"], times: 2 },
  ]);
  for (const action of ["load", "delete"] as const) {
    assert.throws(() => planSteps(action, "a", { existing }), (err: Error) => {
      assert.ok(err instanceof NotFoundError);
      assert.equal(err.message, "snapshot 'a' not found on drive 'data'");
      return true;
    });
  }
});

Deno.test("a live snapshot's VM state goes to the first drive; a load finds the drive holding it", () => {
  const existing = new Map([["hdd", [snap("s")]], ["data", [snap("s", 1000)]]]);
  assert.equal(vmStateDrive("create", "s", existing), "hdd");
  assert.equal(vmStateDrive("load", "s", existing), "data");
  assert.throws(
    () => vmStateDrive("load", "s", new Map([["hdd", [snap("s")]]])),
    /snapshot 's' on drive 'hdd' holds no VM state \(taken offline\?\): stop the VM/,
  );
});

Deno.test("a listing prints one row per drive and snapshot, and names drives without any", () => {
  const vm = { id: "i", name: "g" } as VmRecord;
  const listing = {
    vm,
    mode: "offline" as const,
    drives: [
      { drive: "hdd", file: "/d/hdd.qcow2", snapshots: [snap("before", 2048)] },
      { drive: "data", file: "/d/data.qcow2", snapshots: [] },
    ],
  };
  const lines = formatListing(listing).split("\n");
  assert.match(lines[0], /^DRIVE\s+NAME\s+ID\s+VM STATE\s+DATE\s+VM CLOCK$/);
  assert.match(lines[1], /^hdd\s+before\s+1\s+2K\s+\S+ \S+\s+00:00:00\.000$/);
  assert.equal(lines[2], "no snapshots on data");
  assert.deepEqual(listingJson(listing), {
    id: "i",
    vm: "g",
    mode: "offline",
    drives: [
      {
        drive: "hdd",
        file: "/d/hdd.qcow2",
        snapshots: [{
          name: "before",
          id: "1",
          vm_state_size: 2048,
          date: "1970-01-01T00:00:00.000Z",
          vm_clock_ns: 0,
        }],
      },
      { drive: "data", file: "/d/data.qcow2", snapshots: [] },
    ],
  });
});

// ---------------------------------------------------------------------------------------------
// Real qemu-img and QEMU

async function tool(name: string, args: string[]): Promise<{ code: number; out: string }> {
  const out = await new Deno.Command(name, { args, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  return { code: out.code, out: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

/** Snapshot names in the image, read independently of qvm (with -U: a running VM's too). */
async function imageSnapshotNames(file: string): Promise<string[]> {
  const { code, out } = await tool("qemu-img", ["info", "-U", "--output=json", file]);
  assert.equal(code, 0, out);
  return (JSON.parse(out).snapshots ?? []).map((s: { name: string }) => s.name);
}

interface VmFacts {
  id: string;
  files: Record<string, string>;
}

/** Adds VM `name` with `storage` (YAML list) and returns its id and disk paths. */
async function addVm(env: QvmEnv, name: string, storage: string): Promise<VmFacts> {
  await env.ok(["add", await guestConfig(env, { name, extra: `storage: ${storage}` })]);
  const info = JSON.parse(await env.ok(["info", name, "--json"]));
  const files: Record<string, string> = {};
  for (const s of info.storage) files[s.name] = s.file;
  return { id: info.id, files };
}

/** Creates a disk image where qvm expects it, as a first start would. */
async function createImage(file: string, format = "qcow2"): Promise<void> {
  await Deno.mkdir(dirname(file), { recursive: true });
  const { code, out } = await tool("qemu-img", ["create", "-q", "-f", format, file, "32M"]);
  assert.equal(code, 0, out);
}

async function fails(env: QvmEnv, args: string[], code: number, message: RegExp) {
  const res = await env.run(args);
  assert.equal(res.code, code, `qvm ${args.join(" ")}: ${res.stderr}`);
  assert.match(res.stderr, message);
  assert.equal(res.stderr.trim().split("\n").length, 1, res.stderr);
}

Deno.test("offline create, list, load and delete act on the qcow2 image", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "off", "[{name: hdd, size: 32M}]");
    const file = vm.files.hdd;
    await createImage(file);

    const created = JSON.parse(await env.ok(["snapshot", "create", "off", "before", "--json"]));
    assert.deepEqual(created, {
      id: vm.id,
      vm: "off",
      mode: "offline",
      snapshot: "before",
      actions: [{ action: "create", drive: "hdd", vm_state: false }],
      skipped: [],
    });
    assert.deepEqual(await imageSnapshotNames(file), ["before"]);

    const listed = JSON.parse(await env.ok(["snapshot", "list", "off", "--json"]));
    assert.equal(listed.mode, "offline");
    assert.equal(listed.drives.length, 1);
    assert.equal(listed.drives[0].drive, "hdd");
    assert.equal(listed.drives[0].file, file);
    assert.equal(listed.drives[0].snapshots[0].name, "before");
    assert.equal(listed.drives[0].snapshots[0].id, "1");
    assert.equal(listed.drives[0].snapshots[0].vm_state_size, 0);
    assert.ok(!Number.isNaN(Date.parse(listed.drives[0].snapshots[0].date)));
    assert.match(await env.ok(["snapshot", "list", "off"]), /^hdd\s+before\s+1\s+0\s/m);

    // Data written after the snapshot is gone once it is loaded.
    assert.equal((await tool("qemu-io", ["-c", "write -P 0xab 0 4k", file])).code, 0);
    assert.notEqual((await tool("qemu-io", ["-c", "read -P 0 0 4k", file])).code, 0);
    assert.equal(
      await env.ok(["snapshot", "load", "off", "before"]),
      "loaded snapshot 'before' on hdd\n",
    );
    const read = await tool("qemu-io", ["-c", "read -P 0 0 4k", file]);
    assert.equal(read.code, 0, read.out);

    assert.equal(
      await env.ok(["snapshot", "delete", "off", "before"]),
      "deleted snapshot 'before' on hdd\n",
    );
    assert.deepEqual(await imageSnapshotNames(file), []);
    assert.equal(await env.ok(["snapshot", "list", "off"]), "no snapshots on hdd\n");
  });
});

Deno.test("create of an existing name is an error; --overwrite replaces it", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "ow", "[{name: hdd, size: 32M}]");
    await createImage(vm.files.hdd);
    await env.ok(["snapshot", "create", "ow", "base"]);
    await fails(
      env,
      ["snapshot", "create", "ow", "base"],
      3,
      /^qvm: snapshot 'base' already exists on drive 'hdd' \(--overwrite replaces it\)$/m,
    );
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), ["base"]);
    assert.equal(
      await env.ok(["snapshot", "create", "ow", "base", "--overwrite"]),
      "deleted snapshot 'base' on hdd\ncreated snapshot 'base' on hdd\n",
    );
    // The replacement holds what the disk had when it was taken, not the old contents.
    assert.equal((await tool("qemu-io", ["-c", "write -P 0xab 0 4k", vm.files.hdd])).code, 0);
    await env.ok(["snapshot", "create", "ow", "base", "--overwrite"]);
    assert.equal((await tool("qemu-io", ["-c", "write -P 0xcd 0 4k", vm.files.hdd])).code, 0);
    await env.ok(["snapshot", "load", "ow", "base"]);
    const read = await tool("qemu-io", ["-c", "read -P 0xab 0 4k", vm.files.hdd]);
    assert.equal(read.code, 0, read.out);
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), ["base"]);
  });
});

Deno.test("load or delete of a missing snapshot is not found, naming drive and snapshot", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "miss", "[{name: hdd, size: 32M}]");
    await createImage(vm.files.hdd);
    for (const action of ["load", "delete"]) {
      await fails(
        env,
        ["snapshot", action, "miss", "nope"],
        3,
        /^qvm: snapshot 'nope' not found on drive 'hdd'$/m,
      );
    }
  });
});

Deno.test("snapshot on a raw disk is a clear error naming the drive; unnamed raw drives are skipped", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(
      env,
      "mix",
      "[{name: hdd, size: 32M}, {name: scratch, type: raw, size: 8M}]",
    );
    await createImage(vm.files.hdd);
    await createImage(vm.files.scratch, "raw");
    for (const action of ["create", "load", "delete"]) {
      await fails(
        env,
        ["snapshot", action, "mix", "s1", "--drive", "scratch"],
        3,
        /^qvm: drive 'scratch' is raw: snapshots need qcow2$/m,
      );
    }
    await fails(
      env,
      ["snapshot", "list", "mix", "--drive", "scratch"],
      3,
      /^qvm: drive 'scratch' is raw: snapshots need qcow2$/m,
    );
    const res = await env.run(["snapshot", "create", "mix", "s1"]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, "created snapshot 's1' on hdd\n");
    assert.match(res.stderr, /warning: skipped raw drive 'scratch' \(snapshots need qcow2\)/);
  });
});

Deno.test("a qcow2 drive whose image is really raw is refused, naming the drive", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "liar", "[{name: hdd, size: 32M}]");
    await createImage(vm.files.hdd, "raw");
    await fails(
      env,
      ["snapshot", "create", "liar", "s1"],
      3,
      /^qvm: drive 'hdd' is raw: snapshots need qcow2$/m,
    );
  });
});

Deno.test("an unknown drive is exit 3 and lists the VM's drives", async () => {
  await withEnv(async (env) => {
    await addVm(env, "dr", "[{name: hdd, size: 32M}, {name: scratch, type: raw, size: 8M}]");
    for (const args of [["create", "dr", "s1"], ["load", "dr", "s1"], ["list", "dr"]]) {
      await fails(
        env,
        ["snapshot", ...args, "--drive", "nope"],
        3,
        /^qvm: VM 'dr' has no drive 'nope' \(its drives: hdd, scratch\)$/m,
      );
    }
  });
});

Deno.test("a VM without qcow2 drives is a clear error", async () => {
  await withEnv(async (env) => {
    await addVm(env, "rawonly", "[{name: scratch, type: raw, size: 8M}]");
    await fails(
      env,
      ["snapshot", "create", "rawonly", "s1"],
      3,
      /^qvm: VM 'rawonly' has no qcow2 drive to snapshot \(its drives: scratch; snapshots need qcow2\)$/m,
    );
    await env.ok(["add", await guestConfig(env, { name: "bare" })]);
    await fails(
      env,
      ["snapshot", "list", "bare"],
      3,
      /^qvm: VM 'bare' has no qcow2 drive to snapshot \(it has no drives; snapshots need qcow2\)$/m,
    );
  });
});

Deno.test("a disk that was never created (VM never started) is a clear error", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "fresh", "[{name: hdd, size: 32M}]");
    const message = new RegExp(
      `^qvm: drive 'hdd' has no image yet at ${vm.files.hdd} \\(qvm start creates it\\)$`,
      "m",
    );
    await fails(env, ["snapshot", "create", "fresh", "s1"], 3, message);
    await fails(env, ["snapshot", "list", "fresh"], 3, message);
    await assert.rejects(Deno.stat(vm.files.hdd), Deno.errors.NotFound);
  });
});

Deno.test("--live on a stopped VM is exit 3; so are bad names and an unknown VM", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "cold", "[{name: hdd, size: 32M}]");
    await createImage(vm.files.hdd);
    for (const args of [["create", "cold", "s1"], ["load", "cold", "s1"], ["list", "cold"]]) {
      await fails(
        env,
        ["snapshot", ...args, "--live"],
        3,
        /^qvm: VM 'cold' is not running \(status: created\): --live needs a running VM$/m,
      );
    }
    await fails(
      env,
      ["snapshot", "create", "cold", "123"],
      3,
      /^qvm: invalid snapshot name '123': it is all digits/m,
    );
    await fails(env, ["snapshot", "create", "ghost", "s1"], 3, /ghost/);
    await fails(env, ["snapshot", "create", "cold"], 3, /missing argument NAME/);
    await fails(env, ["snapshot", "list", "cold", "extra"], 3, /unexpected argument 'extra'/);
    await fails(env, ["snapshot", "load", "cold", "s1", "--overwrite"], 3, /unknown option/);
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), []);
  });
});

Deno.test("an offline snapshot waits for the VM's lock (held by start) and for the disk's lock", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "lk", "[{name: hdd, size: 32M}]");
    await createImage(vm.files.hdd);
    const dirs = { dataDir: env.dataDir, runtimeDir: env.runtimeDir };
    const vmLock = await acquireLock(vmPaths(dirs, vm.id).lockFile, { timeoutMs: 0, what: "x" });
    try {
      await fails(
        env,
        ["snapshot", "create", "lk", "s1", "--timeout", "0.5"],
        2,
        /^qvm: VM 'lk' is busy: another qvm command holds its lock$/m,
      );
    } finally {
      vmLock.release();
    }
    // A second VM using the same image file contends for the same disk lock.
    await env.ok([
      "add",
      await guestConfig(env, {
        name: "twin",
        extra: `storage: [{name: disk, file: ${vm.files.hdd}, size: 32M}]`,
      }),
    ]);
    const diskLock = await acquireLock(diskLockPath(dirs, vm.files.hdd), {
      timeoutMs: 0,
      what: "x",
    });
    try {
      for (const name of ["lk", "twin"]) {
        await fails(
          env,
          ["snapshot", "create", name, "s1", "--timeout", "0.5"],
          2,
          new RegExp(
            `^qvm: disk image ${vm.files.hdd} is busy: another qvm command holds its lock$`,
            "m",
          ),
        );
      }
    } finally {
      diskLock.release();
    }
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), []);
    await env.ok(["snapshot", "create", "twin", "s1"]);
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), ["s1"]);
  });
});

// --- Live: a running guest ---------------------------------------------------------------------

const encoder = new TextEncoder();

/**
 * Types `command` on the guest's serial console and returns what came back once `until` matches
 * (resending every few seconds, in case the shell was not reading yet). The socket takes one
 * client at a time: this connects, does its work and closes.
 */
async function serial(
  env: QvmEnv,
  id: string,
  options: { command: string; until: RegExp; ms?: number },
): Promise<string> {
  const conn = await Deno.connect({
    transport: "unix",
    path: join(env.runtimeDir, `${id}.serial`),
  });
  const deadline = Date.now() + (options.ms ?? 30_000);
  let text = "";
  let closed = false;
  const timer = setTimeout(() => {
    closed = true;
    conn.close();
  }, options.ms ?? 30_000);
  const resend = setInterval(() => {
    conn.write(encoder.encode(`${options.command}\n`)).catch(() => {});
  }, 5000);
  try {
    await conn.write(encoder.encode(`${options.command}\n`));
    const buf = new Uint8Array(4096);
    const decoder = new TextDecoder();
    while (!options.until.test(text)) {
      let n: number | null = null;
      try {
        n = await conn.read(buf);
      } catch { /* closed by the timer */ }
      if (n === null || Date.now() > deadline) {
        throw new Error(`no ${options.until} on the serial console; got ${JSON.stringify(text)}`);
      }
      text += decoder.decode(buf.subarray(0, n), { stream: true });
    }
    return text;
  } finally {
    clearTimeout(timer);
    clearInterval(resend);
    if (!closed) conn.close();
  }
}

/** Exit status of `cat /tmp/m` in the guest, and whether the marker was printed. */
async function markerInGuest(env: QvmEnv, id: string): Promise<{ rc: number; seen: boolean }> {
  // The command echoes as typed: `QVM""MARK` and `RC=$?` only match in the output.
  const text = await serial(env, id, { command: `cat /tmp/m; echo "RC=$?"`, until: /RC=\d+/ });
  return { rc: Number(text.match(/RC=(\d+)/)![1]), seen: /^QVMMARK\r?$/m.test(text) };
}

Deno.test("a live snapshot load restores the guest's memory: a marker written after it is gone", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(
      env,
      "hot",
      "[{name: hdd, size: 32M}, {name: scratch, type: raw, size: 8M}]",
    );
    await env.ok(["start", "hot", ...WAIT_READY]);
    assert.deepEqual(await markerInGuest(env, vm.id), { rc: 1, seen: false });

    const created = await env.run(["snapshot", "create", "hot", "clean"]);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.stdout, "created snapshot 'clean' on hdd (live, VM state)\n");
    assert.match(created.stderr, /skipped raw drive 'scratch'/);
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), ["clean"]);

    await serial(env, vm.id, { command: `echo QVM""MARK > /tmp/m; echo "RC=$?"`, until: /RC=0/ });
    assert.deepEqual(await markerInGuest(env, vm.id), { rc: 0, seen: true });

    assert.equal(
      await env.ok(["snapshot", "load", "hot", "clean", "--live"]),
      "loaded snapshot 'clean' on hdd (live, VM state)\n",
    );
    assert.deepEqual(await markerInGuest(env, vm.id), { rc: 1, seen: false });
    const status = JSON.parse(await env.ok(["status", "hot", "--json"]));
    assert.equal(status.status, "running");
    assert.equal(status.qemu_status, "running");
  });
});

Deno.test("live list and delete; live errors name the drive and snapshot", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(
      env,
      "warm",
      "[{name: hdd, size: 32M}, {name: scratch, type: raw, size: 8M}]",
    );
    // A disk-only snapshot taken before the first start (start keeps the existing image).
    await createImage(vm.files.hdd);
    await env.ok(["snapshot", "create", "warm", "cold"]);
    await env.ok(["start", "warm", ...WAIT_READY]);

    const created = JSON.parse(await env.ok(["snapshot", "create", "warm", "hot", "--json"]));
    assert.equal(created.mode, "live");
    assert.deepEqual(created.actions, [{ action: "create", drive: "hdd", vm_state: true }]);
    assert.deepEqual(created.skipped, ["scratch"]);

    const listed = JSON.parse(await env.ok(["snapshot", "list", "warm", "--json", "--live"]));
    assert.equal(listed.mode, "live");
    const snaps = listed.drives[0].snapshots;
    assert.deepEqual(snaps.map((s: { name: string }) => s.name), ["cold", "hot"]);
    assert.equal(snaps[0].vm_state_size, 0);
    assert.ok(snaps[1].vm_state_size > 0);
    assert.ok(snaps[1].vm_clock_ns > 0);
    assert.match(await env.ok(["snapshot", "list", "warm"]), /^hdd\s+hot\s+2\s+\d/m);

    await fails(
      env,
      ["snapshot", "create", "warm", "hot"],
      3,
      /^qvm: snapshot 'hot' already exists on drive 'hdd' \(--overwrite replaces it\)$/m,
    );
    assert.equal(
      await env.ok(["snapshot", "create", "warm", "hot", "--overwrite"]),
      "deleted snapshot 'hot' on hdd (live)\ncreated snapshot 'hot' on hdd (live, VM state)\n",
    );
    await fails(
      env,
      ["snapshot", "load", "warm", "nope"],
      3,
      /^qvm: snapshot 'nope' not found on drive 'hdd'$/m,
    );
    await fails(
      env,
      ["snapshot", "delete", "warm", "nope", "--live"],
      3,
      /^qvm: snapshot 'nope' not found on drive 'hdd'$/m,
    );
    await fails(
      env,
      ["snapshot", "load", "warm", "cold"],
      3,
      /^qvm: snapshot 'cold' on drive 'hdd' holds no VM state \(taken offline\?\): stop the VM/m,
    );
    await fails(
      env,
      ["snapshot", "create", "warm", "x", "--drive", "scratch"],
      3,
      /^qvm: drive 'scratch' is raw: snapshots need qcow2$/m,
    );

    assert.equal(
      await env.ok(["snapshot", "delete", "warm", "hot"]),
      "deleted snapshot 'hot' on hdd (live)\n",
    );
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), ["cold"]);
    await env.ok(["snapshot", "delete", "warm", "cold", "--live"]);
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), []);
    assert.equal(await env.ok(["snapshot", "list", "warm"]), "no snapshots on hdd\n");
    const status = JSON.parse(await env.ok(["status", "warm", "--json"]));
    assert.equal(status.qemu_status, "running");
  });
});

async function qmp<T>(env: QvmEnv, id: string, command: string, args?: Record<string, unknown>) {
  const { QmpClient } = await import("../src/qemu/qmp.ts");
  const client = await QmpClient.connect(join(env.runtimeDir, `${id}.qmp`));
  try {
    return await client.execute<T>(command, args);
  } finally {
    client.close();
    await client.closed;
  }
}

Deno.test("a live job that QEMU fails is reported in QEMU's words and dismissed", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "blocked", "[{name: hdd, size: 32M}]");
    await env.ok(["start", "blocked", ...WAIT_READY]);
    // QEMU refuses to save VM state while block migration is enabled.
    await qmp(env, vm.id, "migrate-set-capabilities", {
      capabilities: [{ capability: "block", state: true }],
    });
    for (let attempt = 0; attempt < 2; attempt++) {
      await fails(
        env,
        ["snapshot", "create", "blocked", "s1"],
        1,
        /^qvm: snapshot-save failed: Block migration and snapshots are incompatible$/m,
      );
    }
    assert.deepEqual(await qmp(env, vm.id, "query-jobs"), []);
    assert.equal((await qmp<{ status: string }>(env, vm.id, "query-status")).status, "running");
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), []);
  });
});

Deno.test("a live load that QEMU fails (VM changed since) says the VM is left paused", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "grown", "[{name: hdd, size: 32M}]");
    await env.ok(["start", "grown", ...WAIT_READY]);
    await env.ok(["snapshot", "create", "grown", "small"]);
    await env.ok(["stop", "grown", "--force"]);
    await env.ok(["apply", "grown", "--memory", "256M"]);
    await env.ok(["start", "grown", ...WAIT_READY]);
    const res = await env.run(["snapshot", "load", "grown", "small"]);
    assert.equal(res.code, 1, res.stderr);
    const [message, ...detail] = res.stderr.trim().split("\n");
    assert.match(
      message,
      /^qvm: snapshot-load failed: .+; the VM is left paused \('qvm qmp resume grown' resumes it\)$/,
    );
    // QEMU's own reason, from its log, follows the one-line message.
    assert.match(detail.join("\n"), /mismatch: pc\.ram/);
    assert.deepEqual(await qmp(env, vm.id, "query-jobs"), []);
    assert.equal((await qmp<{ status: string }>(env, vm.id, "query-status")).status, "restore-vm");
  });
});
