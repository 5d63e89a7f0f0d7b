import assert from "node:assert/strict";
import { join } from "node:path";
import { exists, QvmEnv, withEnv } from "../helpers/qvm.ts";
import { guestConfig } from "../helpers/guest.ts";
import { checkVerdict, mapLimit, parseImageInfo, referencedFiles } from "../../src/vm/storage.ts";
import { formatSize } from "../../src/cli/_size.ts";

const MiB = 1024 * 1024;

async function addVm(env: QvmEnv, name: string, extra: string): Promise<string> {
  return JSON.parse(await env.ok(["add", await guestConfig(env, { name, extra }), "--json"])).id;
}

async function qemuImg(...args: string[]): Promise<void> {
  const out = await new Deno.Command("qemu-img", { args, stdout: "null", stderr: "piped" })
    .output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
}

function diskPath(env: QvmEnv, id: string, file: string): string {
  return join(env.dataDir, "disks", id, file);
}

interface LsRow {
  vm: string;
  storage: string;
  type: string;
  path: string;
  state: string;
  format: string | null;
  virtual_size: number | null;
  actual_size: number | null;
  backing_file: string | null;
}

Deno.test("sizes read the way people write them", () => {
  const cases: [number | null, string][] = [
    [0, "0"],
    [512, "512"],
    [1536, "1.5K"],
    [32 * MiB, "32M"],
    [10 * 1024 * MiB, "10G"],
    [1.25 * 1024 * 1024 * MiB, "1.3T"],
    [null, "-"],
  ];
  for (const [bytes, text] of cases) assert.equal(formatSize(bytes), text, String(bytes));
});

Deno.test("qemu-img check reports become verdicts: clean, corrupt, leaking, unreadable", () => {
  const clean = '{"image-end-offset": 262144, "total-clusters": 512, "check-errors": 0}';
  assert.deepEqual(checkVerdict({ code: 0, stdout: clean, stderr: "" }), {
    result: "ok",
    detail: null,
  });
  const corrupt = checkVerdict({
    code: 2,
    stdout: '{"corruptions": 3, "check-errors": 0, "format": "qcow2"}',
    stderr: "ERROR cluster 0 refcount=0 reference=1\n",
  });
  assert.equal(corrupt.result, "corrupt");
  assert.match(corrupt.detail!, /^3 corruptions \(ERROR cluster 0 refcount=0 reference=1\)$/);
  const leaks = checkVerdict({ code: 3, stdout: '{"leaks": 1, "check-errors": 0}', stderr: "" });
  assert.equal(leaks.result, "leaks");
  assert.match(leaks.detail!, /^1 leaked cluster: .*qemu-img check -r leaks/);
  assert.deepEqual(
    checkVerdict({
      code: 1,
      stdout: "",
      stderr: "qemu-img: Could not open 'x': Image is not in qcow2 format\n",
    }),
    { result: "unreadable", detail: "Could not open 'x': Image is not in qcow2 format" },
  );
});

Deno.test("qemu-img info JSON gives format, sizes and the full backing path", () => {
  const info = parseImageInfo(JSON.stringify({
    "virtual-size": 33554432,
    "format": "qcow2",
    "actual-size": 200704,
    "backing-filename": "base.qcow2",
    "full-backing-filename": "/images/base.qcow2",
  }));
  assert.deepEqual(info, {
    format: "qcow2",
    virtualSize: 33554432,
    actualSize: 200704,
    backingFile: "/images/base.qcow2",
  });
  assert.equal(parseImageInfo('{"virtual-size": 1, "format": "raw"}').backingFile, null);
});

Deno.test("mapLimit keeps input order and never runs more than the limit at once", async () => {
  let running = 0;
  let peak = 0;
  const out = await mapLimit([5, 1, 4, 2, 3, 0], 2, async (n) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, n));
    running--;
    return n * 10;
  });
  assert.deepEqual(out, [50, 10, 40, 20, 30, 0]);
  assert.equal(peak, 2);
  assert.deepEqual(await mapLimit([], 4, (n: number) => Promise.resolve(n)), []);
});

Deno.test("storage ls reads a running VM's disks (-U), their backing file, and missing ones", async () => {
  await withEnv(async (env) => {
    const base = join(env.root, "base.qcow2");
    await qemuImg("create", "-q", "-f", "qcow2", base, "16M");
    const id = await addVm(
      env,
      "g1",
      "storage:\n  - {name: hdd, size: 32M}\n" +
        `  - {name: ovl, size: 48M, backing_file: ${base}, backing_format: qcow2}`,
    );
    await addVm(
      env,
      "g2",
      `storage:\n  - {name: data, size: 8M}\n  - {name: share, type: virtfs, path: ${env.root}, ` +
        "mount_tag: share}",
    );
    await env.ok(["start", "g1", "--wait-for", "qmp"]);

    const rows: LsRow[] = JSON.parse(await env.ok(["storage", "ls", "--json"]));
    const row = (vm: string, storage: string) =>
      rows.find((r) => r.vm === vm && r.storage === storage)!;
    assert.equal(rows.length, 4);
    assert.equal(row("g1", "hdd").state, "present");
    assert.equal(row("g1", "hdd").format, "qcow2");
    assert.equal(row("g1", "hdd").virtual_size, 32 * MiB);
    assert.equal(row("g1", "hdd").path, diskPath(env, id, "hdd.qcow2"));
    assert.ok(row("g1", "hdd").actual_size! > 0);
    assert.equal(row("g1", "ovl").backing_file, base);
    assert.equal(row("g1", "ovl").virtual_size, 48 * MiB);
    assert.equal(row("g2", "data").state, "missing");
    assert.equal(row("g2", "data").format, null);
    assert.deepEqual(
      [row("g2", "share").type, row("g2", "share").path, row("g2", "share").state],
      ["virtfs", env.root, "present"],
    );
    assert.deepEqual(Object.keys(rows[0]), [
      "vm",
      "vm_id",
      "storage",
      "type",
      "path",
      "state",
      "format",
      "virtual_size",
      "actual_size",
      "backing_file",
      "error",
    ]);

    const text = await env.ok(["storage", "ls"]);
    assert.match(text, /^VM\s+STORAGE\s+TYPE\s+STATE\s+FORMAT\s+VIRTUAL\s+ACTUAL\s+BACKING\s+PATH/);
    assert.match(text, /\ng1\s+hdd\s+qcow2\s+present\s+qcow2\s+32M\s/);
    assert.match(text, new RegExp(`\\ng1\\s+ovl\\s+.*48M.*${base}`));
    assert.match(text, /\ng2\s+data\s+qcow2\s+missing\s+-\s+-\s+-\s+-\s/);

    const only: LsRow[] = JSON.parse(await env.ok(["storage", "ls", "g2", "--json"]));
    assert.deepEqual(only.map((r) => r.storage), ["data", "share"]);
  });
});

Deno.test("storage ls of an unknown VM is exit 3 naming it", async () => {
  await withEnv(async (env) => {
    const res = await env.run(["storage", "ls", "nope"]);
    assert.equal(res.code, 3);
    assert.match(res.stderr, /^qvm: no VM with id or name 'nope'\n$/);
  });
});

Deno.test("storage ls with no VMs says so on stderr and prints [] as JSON", async () => {
  await withEnv(async (env) => {
    const res = await env.run(["storage", "ls"]);
    assert.equal(res.code, 0);
    assert.equal(res.stdout, "");
    assert.match(res.stderr, /no VMs defined/);
    assert.deepEqual(JSON.parse(await env.ok(["storage", "ls", "--json"])), []);
  });
});

Deno.test("storage ls without qemu-img is exit 1 saying what to install", async () => {
  await withEnv(async (env) => {
    const id = await addVm(env, "g1", "storage: [{name: hdd, size: 16M}]");
    await Deno.mkdir(join(env.dataDir, "disks", id), { recursive: true });
    await qemuImg("create", "-q", "-f", "qcow2", diskPath(env, id, "hdd.qcow2"), "16M");
    const res = await env.run(["storage", "ls"], { env: { PATH: "/nonexistent" } });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /^qvm: qemu-img not found: install qemu-utils\n$/);
  });
});

Deno.test("storage ls shows an unreadable image as such, with qemu-img's reason", async () => {
  await withEnv(async (env) => {
    const id = await addVm(env, "g1", "storage: [{name: hdd, size: 16M}]");
    await Deno.mkdir(join(env.dataDir, "disks", id), { recursive: true });
    await Deno.writeTextFile(diskPath(env, id, "hdd.qcow2"), "not an image at all");
    const res = await env.run(["storage", "ls"]);
    assert.equal(res.code, 0);
    assert.match(res.stdout, /\ng1\s+hdd\s+qcow2\s+unreadable\s/);
    assert.match(res.stderr, /hdd\.qcow2: .*Image is not in qcow2 format/);
  });
});

Deno.test("storage verify: all good is exit 0; a never-created disk is only a note", async () => {
  await withEnv(async (env) => {
    await addVm(
      env,
      "g1",
      "storage:\n  - {name: hdd, size: 32M}\n  - {name: raw1, type: raw, size: 1M}",
    );
    await addVm(env, "g2", "storage: [{name: data, size: 8M}]");
    await env.ok(["start", "g1", "--wait-for", "qmp"]);
    await env.ok(["stop", "g1", "--force"]);
    const res = await env.run(["storage", "verify"]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^note: .*data\.qcow2 \(VM 'g2', disk 'data'\): not created yet/m);
    assert.match(res.stdout, /^all 2 existing disks ok; 1 not created yet$/m);
    assert.equal((await env.run(["storage", "verify", "g1"])).stdout, "all 2 disks ok\n");
    const json = JSON.parse(await env.ok(["storage", "verify", "--json"]));
    assert.deepEqual(
      json.map((r: { storage: string; result: string; problem: boolean }) => [
        r.storage,
        r.result,
        r.problem,
      ]),
      [["hdd", "ok", false], ["raw1", "ok", false], ["data", "not_created", false]],
    );
  });
});

Deno.test("storage verify fails naming a disk qvm created that is gone, and a corrupt one", async () => {
  await withEnv(async (env) => {
    const id = await addVm(
      env,
      "g1",
      "storage:\n  - {name: hdd, size: 32M}\n  - {name: raw1, type: raw, size: 1M}\n" +
        "  - {name: cut, size: 32M}",
    );
    await env.ok(["start", "g1", "--wait-for", "qmp"]);
    await env.ok(["stop", "g1", "--force"]);
    const hdd = diskPath(env, id, "hdd.qcow2");
    const raw = diskPath(env, id, "raw1.raw");
    const cut = diskPath(env, id, "cut.qcow2");

    await Deno.remove(raw);
    let res = await env.run(["storage", "verify"]);
    assert.equal(res.code, 1);
    assert.match(
      res.stdout,
      new RegExp(
        `^problem: ${raw} \\(VM 'g1', disk 'raw1'\\): missing - qvm created this disk`,
        "m",
      ),
    );
    assert.match(res.stderr, /1 of 3 disks have problems/);

    const file = await Deno.open(hdd, { write: true });
    await file.write(new TextEncoder().encode("garbage!garbage!"));
    file.close();
    await Deno.truncate(cut, 1000);
    res = await env.run(["storage", "verify", "g1", "--json"]);
    assert.equal(res.code, 1);
    const byName = Object.fromEntries(
      JSON.parse(res.stdout).map((r: { storage: string }) => [r.storage, r]),
    );
    assert.equal(byName.hdd.result, "unreadable");
    assert.match(byName.hdd.detail, /not in qcow2 format/);
    assert.equal(byName.cut.result, "corrupt");
    assert.match(byName.cut.detail, /corruption/);
    assert.equal(byName.raw1.result, "missing");
    res = await env.run(["storage", "verify"]);
    assert.match(res.stdout, new RegExp(`^problem: ${hdd} .*unreadable`, "m"));
    assert.match(res.stdout, new RegExp(`^problem: ${cut} .*corrupt - \\d+ corruption`, "m"));
  });
});

Deno.test("storage verify of an unknown VM is exit 3 naming it", async () => {
  await withEnv(async (env) => {
    const res = await env.run(["storage", "verify", "nope"]);
    assert.equal(res.code, 3);
    assert.match(res.stderr, /^qvm: no VM with id or name 'nope'\n$/);
  });
});

Deno.test("storage orphaned lists planted files, not VM disks or their backing files", async () => {
  await withEnv(async (env) => {
    const disks = join(env.dataDir, "disks");
    const base = join(disks, "base.qcow2");
    await Deno.mkdir(disks, { recursive: true });
    await qemuImg("create", "-q", "-f", "qcow2", base, "16M");
    const id = await addVm(
      env,
      "g1",
      `storage:\n  - {name: hdd, size: 32M, backing_file: ${base}}\n  - {name: later, size: 8M}`,
    );
    await env.ok(["start", "g1", "--wait-for", "qmp"]);
    await env.ok(["stop", "g1", "--force"]);
    const ghost = join(disks, crypto.randomUUID(), "x.qcow2");
    await Deno.mkdir(join(ghost, ".."), { recursive: true });
    await qemuImg("create", "-q", "-f", "qcow2", ghost, "16M");
    const stray = join(disks, id, "old.raw");
    await Deno.writeTextFile(stray, "0123456789");

    const json = JSON.parse(await env.ok(["storage", "orphaned", "--json"]));
    assert.deepEqual(json.map((f: { path: string }) => f.path).sort(), [ghost, stray].sort());
    assert.deepEqual(Object.keys(json[0]), ["path", "size", "allocated"]);
    assert.equal(json.find((f: { path: string }) => f.path === stray).size, 10);
    assert.ok(exists(diskPath(env, id, "hdd.qcow2")));

    const res = await env.run(["storage", "orphaned"]);
    assert.equal(res.code, 0);
    assert.match(res.stdout, /^SIZE\s+ALLOCATED\s+PATH\n/);
    assert.match(res.stdout, new RegExp(`\\n10\\s+\\S+\\s+${stray}`));
    assert.match(res.stderr, /qvm deletes none of these; remove one with: rm -- PATH/);
    assert.ok(exists(ghost) && exists(stray), "orphaned never deletes");
  });
});

Deno.test("referenced files: disks, their backing files, and files qvm created", () => {
  const dirs = { dataDir: "/d", runtimeDir: "/r" };
  const vm = {
    id: "11111111-2222-3333-4444-555555555555",
    name: "g1",
    configPath: null,
    status: "stopped" as const,
    pid: null,
    qmpSocketPath: null,
    createdAt: "",
    updatedAt: "",
    stopReason: null,
    pidStart: null,
    createdFiles: ["/d/disks/11111111-2222-3333-4444-555555555555/renamed.qcow2"],
    config: {
      arguments: [],
      args: [],
      storage: [
        {
          name: "hdd",
          type: "qcow2" as const,
          size: "1G",
          interface: "virtio" as const,
          backing_file: "/d/disks/base.qcow2",
        },
        {
          name: "ext",
          type: "raw" as const,
          size: "1G",
          interface: "virtio" as const,
          file: "/x/ext.raw",
        },
        {
          name: "share",
          type: "virtfs" as const,
          path: "/srv",
          mount_tag: "s",
          security_model: "none" as const,
          readonly: false,
        },
      ],
    },
  };
  assert.deepEqual([...referencedFiles([vm], dirs)].sort(), [
    "/d/disks/11111111-2222-3333-4444-555555555555/hdd.qcow2",
    "/d/disks/11111111-2222-3333-4444-555555555555/renamed.qcow2",
    "/d/disks/base.qcow2",
    "/x/ext.raw",
  ]);
});

Deno.test("storage orphaned with no disk folder finds nothing", async () => {
  await withEnv(async (env) => {
    const res = await env.run(["storage", "orphaned"]);
    assert.equal(res.code, 0);
    assert.equal(res.stdout, "");
    assert.match(res.stderr, /no orphaned files/);
    assert.deepEqual(JSON.parse(await env.ok(["storage", "orphaned", "--json"])), []);
  });
});

Deno.test("storage usage errors are exit 3 with one line", async () => {
  await withEnv(async (env) => {
    const cases: [string[], RegExp][] = [
      [["storage"], /^qvm: storage: missing subcommand \(ls, verify, orphaned\)\n$/],
      [["storage", "rm"], /^qvm: storage: unknown subcommand 'rm' \(ls, verify, orphaned\)\n$/],
      [["storage", "orphaned", "g1"], /^qvm: qvm storage orphaned: unexpected argument 'g1'\n$/],
      [["storage", "ls", "a", "b"], /^qvm: qvm storage ls: unexpected argument 'b'\n$/],
    ];
    for (const [args, message] of cases) {
      const res = await env.run(args);
      assert.equal(res.code, 3, args.join(" "));
      assert.match(res.stderr, message);
    }
  });
});
