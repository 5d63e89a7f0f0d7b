import assert from "node:assert/strict";
import { exists, withEnv } from "../helpers/qvm.ts";
import {
  addVm,
  createImage,
  fails,
  imageSnapshotNames,
  markerInGuest,
  qmp,
  serial,
  tool,
} from "../helpers/snapshot.ts";
import { guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";
import {
  type BlockDevice,
  formatDate,
  formatVmClock,
  imgFailure,
  parseBlockDevices,
  parseSnapshots,
  partialSnapshots,
  planSteps,
  selectDrives,
  type SnapshotInfo,
  validateSnapshotName,
  vmStateDrive,
  vmStateDrives,
} from "../../src/vm/_snapshot.ts";
import { diskLockPath } from "../../src/vm/snapshot_action.ts";
import { formatListing, partialLines } from "../../src/cli/snapshot.ts";
import { listingJson } from "../../src/vm/snapshot_list.ts";
import { acquireLock } from "../../src/vm/lock.ts";
import { vmPaths } from "../../src/vm_files.ts";
import { NotFoundError, UsageError } from "../../src/errors.ts";
import type { StorageItem } from "../../src/config/mod.ts";
import type { VmRecord } from "../../src/state/mod.ts";

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
  for (const ok of ["before", "v1.2", "pre-upgrade_2024", "a".repeat(255), "1a"]) {
    validateSnapshotName(ok);
  }
  const bad: [string, RegExp][] = [
    ["", /it is empty/],
    ["two words", /spaces or control/],
    ["tab\there", /spaces or control/],
    ["-x", /starts with '-'/],
    ["42", /all digits/],
  ];
  for (const [name, message] of bad) {
    assert.throws(() => validateSnapshotName(name), (err: Error) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, new RegExp(`^invalid snapshot name '.*': .*${message.source}`));
      return true;
    });
  }
  // Names of snapshots made outside qvm may have spaces: load and delete take them.
  validateSnapshotName("two words", "load");
  validateSnapshotName("42", "delete");
});

Deno.test("snapshot names are measured in UTF-8 bytes: QEMU keeps 255, longer ones are refused", () => {
  // 3 bytes per CJK character, 2 per "é", 4 per emoji (2 UTF-16 units).
  for (const ok of ["漢".repeat(85), "a".repeat(253) + "é", "😀".repeat(63) + "abc"]) {
    assert.equal(new TextEncoder().encode(ok).length, 255);
    for (const action of ["create", "load", "delete"] as const) validateSnapshotName(ok, action);
  }
  const bad: [string, number][] = [
    ["漢".repeat(100), 300], // 100 UTF-16 units: the old limit let it through, QEMU cut it
    ["漢".repeat(86), 258],
    ["a".repeat(254) + "é", 256],
    ["a".repeat(256), 256],
    ["😀".repeat(64), 256],
  ];
  for (const [name, bytes] of bad) {
    for (const action of ["create", "load", "delete"] as const) {
      assert.throws(() => validateSnapshotName(name, action), (err: Error) => {
        assert.ok(err instanceof UsageError);
        assert.equal(err.exitCode, 3);
        assert.match(
          err.message,
          new RegExp(`: it is ${bytes} bytes in UTF-8 and QEMU keeps at most 255 \\(it would cut`),
        );
        return true;
      });
    }
  }
  assert.throws(() => validateSnapshotName("a\ud800b"), /it is not valid Unicode/);
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
    /snapshot 's' on drive 'hdd' holds no VM state \(a disk-only snapshot\): stop the VM/,
  );
});

Deno.test("a live load refuses a drive whose snapshot was not taken with the VM state", () => {
  const at = (name: string, dateMs: number, vmClockNs: number, vmStateSize = 0) => ({
    ...snap(name, vmStateSize),
    dateMs,
    vmClockNs,
  });
  const together = new Map([["a", [at("m", 5, 7, 100)]], ["b", [at("m", 5, 7)]]]);
  assert.equal(vmStateDrive("load", "m", together), "a");
  for (const other of [at("m", 6, 7), at("m", 5, 8), at("m", 0, 0)]) {
    assert.throws(
      () => vmStateDrive("load", "m", new Map([["a", [at("m", 5, 7, 100)]], ["b", [other]]])),
      (err: Error) => {
        assert.ok(err instanceof UsageError);
        assert.match(
          err.message,
          /^snapshot 'm' on drive 'b' was not taken together with its VM state on drive 'a': /,
        );
        return true;
      },
    );
  }
  // QEMU loads the first snapshot of a name on each drive: a later twin does not help.
  const shadowed = new Map([["a", [at("m", 5, 7, 100)]], ["b", [at("m", 1, 1), at("m", 5, 7)]]]);
  assert.throws(() => vmStateDrive("load", "m", shadowed), /on drive 'b' was not taken together/);
});

function device(name: string, options: { format?: string; readOnly?: boolean } = {}): BlockDevice {
  return {
    device: name,
    node: `#${name}`,
    format: options.format ?? "qcow2",
    readOnly: options.readOnly ?? false,
    snapshots: [],
  };
}

Deno.test("VM state needs every writable drive: raw, foreign or left-out writable drives refuse", () => {
  const storage = [disk("a"), disk("b"), disk("r", "raw"), share];
  const devices = [device("a"), device("b"), device("r", { format: "raw" })];
  const refused: [
    "create" | "load",
    BlockDevice[],
    string | undefined,
    RegExp,
  ][] = [
    [
      "create",
      devices,
      undefined,
      /^drive 'r' is writable and raw, which cannot hold snapshots: a snapshot with VM state must include every writable drive.*; make it read-only, convert it to qcow2, or take a disk-only snapshot \(no VM state\) with --disk-only$/,
    ],
    [
      "load",
      devices,
      undefined,
      /^drive 'r' is writable and raw, .*: a load with VM state must roll back every writable drive.*; make it read-only, convert it to qcow2, or stop the VM and load the snapshot offline \(disks only\)$/,
    ],
    [
      "create",
      devices,
      "b",
      /^--drive b leaves out writable drives 'a', 'r' of VM 'g': a snapshot with VM state must include every writable drive.*; leave out --drive, or take a disk-only snapshot of 'b' with --disk-only$/,
    ],
    [
      "load",
      [device("a"), device("b")],
      "b",
      /^--drive b leaves out writable drive 'a' of VM 'g': a load with VM state .*; leave out --drive, or stop the VM and load the snapshot offline \(disks only\)$/,
    ],
    [
      "create",
      [device("a"), device("extra")],
      undefined,
      /^drive 'extra' is writable but not in the storage list of VM 'g': .*; make it read-only, or take a disk-only snapshot/,
    ],
    [
      "create",
      [device("a"), device("r", { format: "raw" }), device("s", { format: "vmdk" })],
      undefined,
      /^drives 'r', 's' are writable and raw\/vmdk, .*; make them read-only, convert them to qcow2/,
    ],
  ];
  for (const [action, devs, drive, message] of refused) {
    const store = [...storage, disk("s", "raw"), disk("extra2")];
    assert.throws(
      () => vmStateDrives("g", { action, storage: store, devices: devs, drive }),
      (err: Error) => {
        assert.ok(err instanceof UsageError, err.message);
        assert.equal(err.exitCode, 3);
        assert.match(err.message, message);
        return true;
      },
    );
  }
  // Read-only drives, cdroms (read-only media) and virtfs shares (no block device) do not count.
  const calm = [
    device("a"),
    device("b"),
    device("ide1-cd0", { format: "raw", readOnly: true }),
    device("rodisk", { format: "raw", readOnly: true }),
    device("r", { format: "raw", readOnly: true }),
  ];
  for (const action of ["create", "load"] as const) {
    assert.deepEqual(vmStateDrives("g", { action, storage, devices: calm }), ["a", "b"]);
    assert.deepEqual(
      vmStateDrives("g", {
        action,
        storage: [disk("a"), share],
        devices: [device("a"), device("cd", { format: "raw", readOnly: true })],
        drive: "a",
      }),
      ["a"],
    );
  }
});

Deno.test("block devices come from query-block: only those with a medium, read-only flagged", () => {
  const blocks = [
    {
      device: "ide1-cd0",
      qdev: "/machine/unattached/device[23]",
      inserted: { "node-name": "#block108", drv: "raw", ro: true, image: {} },
    },
    { device: "floppy0", qdev: "/machine/unattached/device[16]" },
    {
      device: "a",
      inserted: {
        "node-name": "#block508",
        drv: "qcow2",
        ro: false,
        image: { snapshots: [{ name: "m", id: "1", "vm-state-size": 9 }] },
      },
    },
    {
      device: "",
      qdev: "/machine/peripheral/disk9/virtio-backend",
      inserted: { "node-name": "n9", drv: "qcow2", ro: false },
    },
  ];
  assert.deepEqual(parseBlockDevices(blocks), [
    { device: "ide1-cd0", node: "#block108", format: "raw", readOnly: true, snapshots: [] },
    {
      device: "a",
      node: "#block508",
      format: "qcow2",
      readOnly: false,
      snapshots: [{ name: "m", id: "1", vmStateSize: 9, dateMs: 0, vmClockNs: 0 }],
    },
    {
      device: "/machine/peripheral/disk9/virtio-backend",
      node: "n9",
      format: "qcow2",
      readOnly: false,
      snapshots: [],
    },
  ]);
  assert.deepEqual(parseBlockDevices(undefined), []);
});

Deno.test("a qemu-img failure is its error line, not the hint after it; a lock names the holder", () => {
  const lock = "qemu-img: Could not open '/d/a.qcow2': Failed to get \"write\" lock\n" +
    "Is another process using the image [/d/a.qcow2]?\n";
  assert.equal(
    imgFailure(lock),
    "Could not open '/d/a.qcow2': Failed to get \"write\" lock " +
      "(another process, such as a running QEMU, is using the image)",
  );
  assert.equal(
    imgFailure("qemu-img: Could not create snapshot 's': -28 (No space left on device)\n"),
    "Could not create snapshot 's': -28 (No space left on device)",
  );
  assert.equal(imgFailure("something odd\n"), undefined);
  assert.equal(imgFailure(""), undefined);
});

Deno.test("a listing prints one row per drive and snapshot, names drives without any, and flags partial snapshots", () => {
  const vm = { id: "i", name: "g" } as VmRecord;
  const drives = [
    { drive: "hdd", file: "/d/hdd.qcow2", snapshots: [snap("before", 2048)] },
    { drive: "data", file: "/d/data.qcow2", snapshots: [] },
  ];
  const listing = { vm, mode: "offline" as const, drives, partial: partialSnapshots(drives) };
  const lines = formatListing(listing).split("\n");
  assert.match(lines[0], /^DRIVE\s+NAME\s+ID\s+VM STATE\s+DATE\s+VM CLOCK$/);
  assert.match(lines[1], /^hdd\s+before\s+1\s+2K\s+\S+ \S+\s+00:00:00\.000$/);
  assert.equal(lines[2], "no snapshots on data");
  assert.deepEqual(partialLines(listing), [
    "partial: snapshot 'before' is on hdd but not on data (an interrupted create or delete); " +
    "remove it with 'qvm snapshot delete g before --drive hdd'",
  ]);
  assert.deepEqual(partialSnapshots(drives.slice(0, 1)), [], "one drive is never partial");
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
    partial: [{ name: "before", drives: ["hdd"], missing: ["data"] }],
  });
});

// ---------------------------------------------------------------------------------------------
// Real qemu-img and QEMU

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
      quiesce: null, // no guest agent (and offline): nothing frozen
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

Deno.test("a live snapshot load restores the guest's memory: a marker written after it is gone", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "hot", "[{name: hdd, size: 32M}]");
    await env.ok(["start", "hot", ...WAIT_READY]);
    assert.deepEqual(await markerInGuest(env, vm.id), { rc: 1, seen: false });

    const created = await env.run(["snapshot", "create", "hot", "clean"]);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.stdout, "created snapshot 'clean' on hdd (live, VM state)\n");
    assert.equal(created.stderr, "");
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), ["clean"]);

    await serial(env, vm.id, { command: `echo QVM""MARK > /tmp/m; echo "RC=$?"`, until: /RC=0/ });
    assert.deepEqual(await markerInGuest(env, vm.id), { rc: 0, seen: true });

    assert.equal(
      await env.ok(["snapshot", "load", "hot", "clean", "--live"]),
      "loaded snapshot 'clean' on hdd (live, VM state)\n",
    );
    assert.deepEqual(await markerInGuest(env, vm.id), { rc: 1, seen: false });
    const status = await env.status("hot");
    assert.equal(status.status, "running");
    assert.equal(status.qemu_status, "running");
  });
});

Deno.test("live list and delete; live errors name the drive and snapshot", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "warm", "[{name: hdd, size: 32M}]");
    // A disk-only snapshot taken before the first start (start keeps the existing image).
    await createImage(vm.files.hdd);
    await env.ok(["snapshot", "create", "warm", "cold"]);
    await env.ok(["start", "warm", ...WAIT_READY]);

    const created = JSON.parse(await env.ok(["snapshot", "create", "warm", "hot", "--json"]));
    assert.equal(created.mode, "live");
    assert.deepEqual(created.actions, [{ action: "create", drive: "hdd", vm_state: true }]);
    assert.deepEqual(created.skipped, []);

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
      /^qvm: snapshot 'cold' on drive 'hdd' holds no VM state \(a disk-only snapshot\): stop the VM/m,
    );

    assert.equal(
      await env.ok(["snapshot", "delete", "warm", "hot"]),
      "deleted snapshot 'hot' on hdd (live)\n",
    );
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), ["cold"]);
    await env.ok(["snapshot", "delete", "warm", "cold", "--live"]);
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), []);
    assert.equal(await env.ok(["snapshot", "list", "warm"]), "no snapshots on hdd\n");
    const status = await env.status("warm");
    assert.equal(status.qemu_status, "running");
  });
});

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

Deno.test("a multibyte snapshot name is kept whole up to 255 bytes and refused beyond, never cut", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "names", "[{name: hdd, size: 32M}]");
    await createImage(vm.files.hdd);
    // 100 CJK characters are 300 bytes: QEMU would keep 85 of them.
    for (
      const [name, bytes] of [
        ["漢".repeat(100), 300],
        ["a".repeat(256), 256],
        ["a".repeat(254) + "é", 256],
      ] as const
    ) {
      for (const action of ["create", "load", "delete"]) {
        await fails(
          env,
          ["snapshot", action, "names", name],
          3,
          new RegExp(
            `^qvm: invalid snapshot name '${name}': it is ${bytes} bytes in UTF-8 and QEMU keeps ` +
              "at most 255 \\(it would cut the name\\)$",
            "m",
          ),
        );
      }
    }
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), []);

    const fits = "漢".repeat(85);
    for (const name of [fits, "b".repeat(255)]) {
      assert.equal(
        await env.ok(["snapshot", "create", "names", name]),
        `created snapshot '${name}' on hdd\n`,
      );
    }
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), [fits, "b".repeat(255)]);
    await fails(
      env,
      ["snapshot", "create", "names", fits],
      3,
      /already exists on drive 'hdd' \(--overwrite replaces it\)$/m,
    );
    assert.equal(
      await env.ok(["snapshot", "load", "names", fits]),
      `loaded snapshot '${fits}' on hdd\n`,
    );
    await env.ok(["snapshot", "delete", "names", fits]);
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), ["b".repeat(255)]);
  });
});

Deno.test("a live snapshot with a 255-byte multibyte name is found again by that name", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "hotname", "[{name: hdd, size: 32M}]");
    await env.ok(["start", "hotname", ...WAIT_READY]);
    await fails(
      env,
      ["snapshot", "create", "hotname", "漢".repeat(86)],
      3,
      /it is 258 bytes in UTF-8 and QEMU keeps at most 255/,
    );
    const fits = "😀".repeat(63) + "漢";
    await env.ok(["snapshot", "create", "hotname", fits]);
    const listing = JSON.parse(await env.ok(["snapshot", "list", "hotname", "--json"]));
    assert.deepEqual(listing.drives[0].snapshots.map((s: { name: string }) => s.name), [fits]);
    assert.equal(
      await env.ok(["snapshot", "load", "hotname", fits]),
      `loaded snapshot '${fits}' on hdd (live, VM state)\n`,
    );
    await env.ok(["snapshot", "delete", "hotname", fits]);
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), []);
  });
});

Deno.test("an offline snapshot of an image a running QEMU holds shows qemu-img's lock error", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "held", "[{name: hdd, size: 32M}]");
    await createImage(vm.files.hdd);
    await env.ok([
      "add",
      await guestConfig(env, {
        name: "holder",
        extra: `storage: [{name: disk, file: ${vm.files.hdd}, size: 32M}]`,
      }),
    ]);
    await env.ok(["start", "holder"]);
    for (const action of ["create", "load", "delete"]) {
      const res = await env.run(["snapshot", action, "held", "s1"]);
      assert.equal(res.code, 1, res.stderr);
      const [message] = res.stderr.split("\n");
      assert.equal(
        message,
        `qvm: drive 'hdd': Could not open '${vm.files.hdd}': Failed to get shared "write" lock ` +
          "(another process, such as a running QEMU, is using the image)",
      );
    }
    assert.deepEqual(await imageSnapshotNames(vm.files.hdd), []);
  });
});

Deno.test("an offline create interrupted between drives takes the snapshot off the drives it reached; list flags a partial one with its repair", async () => {
  await withEnv(async (env) => {
    const vm = await addVm(env, "part", "[{name: a, size: 32M}, {name: b, size: 32M}]");
    await createImage(vm.files.a);
    await createImage(vm.files.b);
    // A qemu-img that, after each snapshot create, says so and takes two seconds more.
    const bin = `${env.root}/slowbin`;
    const marker = `${env.root}/snapshot.made`;
    await Deno.mkdir(bin);
    await Deno.writeTextFile(
      `${bin}/qemu-img`,
      `#!/bin/sh\n/usr/bin/qemu-img "$@" || exit $?\n` +
        `if [ "$1 $2" = "snapshot -c" ]; then touch ${marker}; sleep 2; fi\n`,
      { mode: 0o755 },
    );
    const child = env.command(["snapshot", "create", "part", "s1"], {
      env: { PATH: `${bin}:${Deno.env.get("PATH")}` },
    }).spawn();
    assert.ok(
      await eventually(() => exists(marker), { timeout: 30_000 }),
      "no drive was snapshotted",
    );
    child.kill("SIGTERM");
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 143, stderr);
    assert.match(stderr, /interrupted: snapshot 's1' was taken off the drives it had reached/);
    assert.deepEqual(await imageSnapshotNames(vm.files.a), []);
    assert.deepEqual(await imageSnapshotNames(vm.files.b), []);

    // One left on some drives only (a SIGKILL, or an older qvm): list flags it, says the repair.
    const made = await tool("qemu-img", ["snapshot", "-c", "s2", vm.files.a]);
    assert.equal(made.code, 0, made.out);
    const listed = await env.run(["snapshot", "list", "part"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(
      listed.stderr,
      /partial: snapshot 's2' is on a but not on b .*'qvm snapshot delete part s2 --drive a'/,
    );
    const json = JSON.parse(await env.ok(["snapshot", "list", "part", "--json"]));
    assert.deepEqual(json.partial, [{ name: "s2", drives: ["a"], missing: ["b"] }]);
    await env.ok(["snapshot", "delete", "part", "s2", "--drive", "a"]);
    const clean = await env.run(["snapshot", "list", "part"]);
    assert.doesNotMatch(clean.stderr, /partial/);
  });
});
