import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { withEnv } from "../helpers/qvm.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

Deno.test("add prints a new UUID; ls, status, info and inspect show the VM by id and by name", async () => {
  await withEnv(async (env) => {
    const config = await env.file(
      "web.yaml",
      "name: web1\nmemory: 2G\ncpu: 2\nstorage:\n  - name: hdd\n    size: 5G\n",
    );
    const id = (await env.ok(["add", config])).trim();
    assert.match(id, UUID);
    const ls = JSON.parse(await env.ok(["ls", "--json"]));
    assert.deepEqual(ls, [{ id, name: "web1", status: "created", pid: null, stop_reason: null }]);
    assert.match(await env.ok(["ls"]), /web1\s+created/);
    for (const ref of [id, "web1"]) {
      const status = await env.status(ref);
      assert.equal(status.id, id);
      assert.equal(status.status, "created");
    }
    assert.equal((await env.ok(["status", "web1"])).trim(), "web1: created");
    const info = JSON.parse(await env.ok(["info", "web1", "--json"]));
    assert.equal(info.memory, "2G");
    assert.equal(info.cpu, 2);
    assert.equal(info.config_path, config);
    assert.equal(info.storage[0].name, "hdd");
    assert.equal(info.storage[0].file, join(env.dataDir, "disks", id, "hdd.qcow2"));
    assert.match(await env.ok(["info", id]), /hdd: qcow2 5G virtio/);
    const inspect = JSON.parse(await env.ok(["inspect", "web1"]));
    assert.equal(inspect.id, id);
    assert.equal(inspect.process.alive, false);
    assert.equal(inspect.config.memory, "2G");
  });
});

Deno.test("add merges configs left to right and puts flags on top", async () => {
  await withEnv(async (env) => {
    const base = await env.file(
      "base.yaml",
      "name: base\nmemory: 1G\ncpu: 1\nstorage: [{name: hdd, size: 5G}]\n",
    );
    const over = await env.file(
      "over.yaml",
      "memory: 2G\nstorage: [{name: hdd, size: 8G}, {name: data, type: raw, size: 1G}]\n",
    );
    await env.ok(["add", base, over, "--cpu", "4", "--name", "merged"]);
    const info = JSON.parse(await env.ok(["info", "merged", "--json"]));
    assert.equal(info.memory, "2G");
    assert.equal(info.cpu, 4);
    assert.deepEqual(
      info.storage.map((s: { name: string; size: string }) => `${s.name}:${s.size}`),
      ["hdd:8G", "data:1G"],
    );
  });
});

Deno.test("add without a name gives vm-<8 hex>; --empty defines an empty VM", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", "--empty"])).trim();
    const ls = JSON.parse(await env.ok(["ls", "--json"]));
    assert.equal(ls[0].name, `vm-${id.slice(0, 8)}`);
    const out = JSON.parse(await env.ok(["add", "--name", "x1", "--memory", "512M", "--json"]));
    assert.equal(out.name, "x1");
    assert.match(out.id, UUID);
  });
});

Deno.test("apply merges into an existing VM, creates an absent one, and refuses invalid configs unchanged", async () => {
  await withEnv(async (env) => {
    const base = await env.file("base.yaml", "memory: 1G\nstorage: [{name: hdd, size: 5G}]\n");
    const id = (await env.ok(["add", base, "--name", "web1"])).trim();
    const more = await env.file("more.yaml", "cpu: 3\nstorage: [{name: hdd, size: 20G}]\n");
    assert.equal((await env.ok(["apply", "web1", more])).trim(), id);
    let info = JSON.parse(await env.ok(["info", id, "--json"]));
    assert.equal(info.memory, "1G");
    assert.equal(info.cpu, 3);
    assert.equal(info.storage[0].size, "20G");
    await env.ok(["apply", "web1", "--memory", "3G"]);
    info = JSON.parse(await env.ok(["info", id, "--json"]));
    assert.equal(info.memory, "3G");

    const before = env.snapshot();
    const bad = await env.file("bad.yaml", "memory: lots\n");
    const res = await env.run(["apply", "web1", bad]);
    assert.equal(res.code, 3);
    assert.match(res.stderr, /invalid memory 'lots'/);
    assert.equal(env.snapshot(), before);

    const created = JSON.parse(await env.ok(["apply", "fresh", more, "--json"]));
    assert.equal(created.created, true);
    assert.equal(created.name, "fresh");
  });
});

/** A host port free right now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** `qemu-img ARGS...`; fails the test unless it succeeds; returns stdout. */
async function qemuImg(args: string[]): Promise<string> {
  const out = await new Deno.Command("qemu-img", { args }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

Deno.test("apply takes the cloud flags: a port or accel flag replaces the old one, a bigger disk size grows the root disk at the next start", async () => {
  await withEnv(async (env) => {
    // A blank image: no guest boots, QEMU and its forwards run (started with --wait-for process).
    await qemuImg(["create", "-q", "-f", "qcow2", `${env.root}/tiny.qcow2`, "64M"]);
    const keygen = await new Deno.Command("ssh-keygen", {
      args: ["-q", "-t", "ed25519", "-N", "", "-f", `${env.root}/k`],
    }).output();
    assert.ok(keygen.success);
    const key = (await Deno.readTextFile(`${env.root}/k.pub`)).trim();
    const id = (await env.ok([
      "add",
      "--name",
      "c1",
      "--memory",
      "32M",
      "--image",
      `${env.root}/tiny.qcow2`,
      "--port",
      "auto:22",
      "--port",
      "8080:80",
      "--user",
      "dev",
      "--disk-size",
      "128M",
      "--accel",
      "tcg",
    ])).trim();
    const config = () => JSON.parse(JSON.parse(env.snapshot())[0].config_data);
    const ports = () =>
      config().network.ports.map((p: { host: unknown; guest: number }) => `${p.host}:${p.guest}`);
    // A VM with port forwards takes any apply (its stored forwards merge as written).
    await env.ok(["apply", "c1", "--memory", "48M"]);
    assert.equal(config().memory, "48M");
    assert.deepEqual(ports(), ["auto:22", "8080:80"]);

    await env.ok(["start", "c1", "--wait-for", "process"]);
    const overlay = `${env.dataDir}/disks/${id}/image-overlay.qcow2`;
    const size = async () =>
      JSON.parse(await qemuImg(["info", "-U", "--output=json", overlay]))["virtual-size"];
    assert.equal(await size(), 128 << 20);
    const before = env.snapshot();
    const running = await env.run(["apply", "c1", "--disk-size", "256M"]);
    assert.equal(running.code, 1, running.stderr);
    assert.equal(running.stderr, "qvm: VM 'c1' is running: stop it before apply\n");
    assert.equal(env.snapshot(), before);
    await env.ok(["stop", "c1", "--force"]);

    const port = freePort();
    const applied = await env.run([
      "apply",
      "c1",
      "--port",
      `${port}:22`,
      "--user",
      "ops",
      "--ssh-key",
      `${env.root}/k.pub`,
      "--disk-size",
      "256M",
      "--accel",
      "kvm",
    ]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.equal(applied.stdout.trim(), id);
    assert.deepEqual(ports(), ["8080:80", `${port}:22`], "the forward to guest port 22 replaced");
    assert.deepEqual(config().cloud_init, { user: "ops", ssh_authorized_keys: [key] });
    assert.equal(config().disk_size, "256M");
    assert.deepEqual(config().arguments, [{ accel: "kvm" }], "the accelerator replaced");
    const dry = await env.ok(["start", "c1", "--dry-run"]);
    assert.match(dry, / -accel kvm /);
    assert.doesNotMatch(dry, /-accel tcg/);
    assert.match(
      dry,
      new RegExp(`hostfwd=tcp:127\\.0\\.0\\.1:8080-:80,hostfwd=tcp:127\\.0\\.0\\.1:${port}-:22 `),
    );

    // Refused, the VM unchanged: a root disk smaller than it already is, a bad flag.
    const unchanged = env.snapshot();
    for (
      const [args, message] of [
        [
          ["--disk-size", "64M"],
          /^qvm: VM 'c1': disk_size 64M is smaller than its root disk \(134217728 bytes\): a root disk only grows\n$/,
        ],
        [["--accel", "hvf"], /^qvm: invalid --accel 'hvf': use kvm or tcg\n$/],
        [["--port", "22"], /invalid port forward '22'/],
      ] as const
    ) {
      const refused = await env.run(["apply", "c1", ...args]);
      assert.equal(refused.code, 3, refused.stderr);
      assert.match(refused.stderr, message);
      assert.equal(env.snapshot(), unchanged);
    }

    // The next start grows the root disk to the new size.
    await env.ok(["apply", "c1", "--accel", "tcg"]);
    const started = await env.run(["start", "c1", "--wait-for", "process"]);
    assert.equal(started.code, 0, started.stderr);
    assert.equal(await size(), 256 << 20);
    const forwards = JSON.parse(await env.ok(["ports", "c1", "--json"])).forwards;
    assert.ok(forwards.some((f: { host_port: number }) => f.host_port === port));
    await env.ok(["stop", "c1", "--force"]);
  });
});

Deno.test("rm removes by id or name, --all removes every VM, and a missing VM removes nothing", async () => {
  await withEnv(async (env) => {
    const id = (await env.ok(["add", "--empty", "--name", "a"])).trim();
    await env.ok(["add", "--empty", "--name", "b"]);
    await env.ok(["add", "--empty", "--name", "c"]);
    const before = env.snapshot();
    const missing = await env.run(["rm", "b", "nope"]);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /no VM with id or name 'nope'/);
    assert.equal(env.snapshot(), before);
    assert.match(await env.ok(["rm", id]), /removed a/);
    assert.deepEqual(
      JSON.parse(await env.ok(["ls", "--json"])).map((v: { name: string }) => v.name),
      ["b", "c"],
    );
    await env.ok(["rm", "--all"]);
    assert.deepEqual(JSON.parse(await env.ok(["ls", "--json"])), []);
  });
});

Deno.test("--help works for qvm and every command; --version prints the version", async () => {
  await withEnv(async (env) => {
    const main = await env.run(["--help"]);
    assert.equal(main.code, 0);
    const commands = [...main.stdout.matchAll(/^ {2}([a-z]+) {2}/gm)].map((m) => m[1]);
    assert.ok(commands.length >= 7, main.stdout);
    for (const command of commands) {
      const help = await env.run([command, "--help"]);
      assert.equal(help.code, 0, `${command}: ${help.stderr}`);
      assert.match(help.stdout, new RegExp(`^Usage: qvm ${command}`));
    }
    assert.match(await env.ok(["--version"]), /^qvm \d+\.\d+\.\d+/);
  });
});

/** Bad input: one line on stderr, the documented exit code, and the database unchanged. */
const BAD_INPUT: {
  name: string;
  files?: Record<string, string>;
  args: string[];
  code: number;
  message: RegExp;
}[] = [
  {
    name: "malformed YAML names file:line:col",
    files: { "bad.yaml": "name: x\nmemory: [1G\ncpu: 2\n" },
    args: ["add", "@bad.yaml"],
    code: 3,
    message: /bad\.yaml:\d+:\d+: /,
  },
  {
    name: "missing config file",
    args: ["add", "/nonexistent/vm.yaml"],
    code: 3,
    message: /\/nonexistent\/vm\.yaml: no such config file/,
  },
  {
    name: "config over 1 MiB",
    files: { "big.yaml": "# pad\n".repeat(200_000) },
    args: ["add", "@big.yaml"],
    code: 3,
    message: /larger than 1 MiB/,
  },
  {
    name: "unknown command",
    args: ["frobnicate"],
    code: 3,
    message: /unknown command 'frobnicate'/,
  },
  {
    name: "unknown flag",
    args: ["add", "--empty", "--colour"],
    code: 3,
    message: /unknown option '--colour'/,
  },
  { name: "missing argument", args: ["status"], code: 3, message: /missing argument VM/ },
  {
    name: "duplicate name",
    args: ["add", "--empty", "--name", "taken"],
    code: 3,
    message: /a VM named 'taken' already exists/,
  },
  {
    name: "name with a space",
    args: ["add", "--empty", "--name", "my vm"],
    code: 3,
    message: /invalid name 'my vm'/,
  },
  {
    name: "name with a leading dash",
    args: ["add", "--empty", "--name=-web"],
    code: 3,
    message: /invalid name '-web'/,
  },
  {
    name: "UUID-shaped name",
    args: ["add", "--empty", "--name", "0b7f1f7e-4a8c-4d6e-9f00-1234567890ab"],
    code: 3,
    message: /cannot look like a VM id/,
  },
  {
    name: "300-character name",
    args: ["add", "--empty", "--name", "a".repeat(300)],
    code: 3,
    message: /at most 63 characters \(this one has 300\)/,
  },
  {
    name: "bad memory",
    args: ["add", "--empty", "--memory", "12X"],
    code: 3,
    message: /invalid memory '12X'/,
  },
  { name: "bad cpu", args: ["add", "--empty", "--cpu", "-2"], code: 3, message: /cpu/ },
  { name: "zero cpu", args: ["add", "--empty", "--cpu", "0"], code: 3, message: /cpu/ },
  {
    name: "unknown storage type",
    files: { "s.yaml": "storage: [{name: d, type: floppy}]\n" },
    args: ["add", "@s.yaml"],
    code: 3,
    message: /unknown storage type 'floppy'/,
  },
  {
    name: "unknown storage interface",
    files: { "s.yaml": "storage: [{name: d, interface: usb3}]\n" },
    args: ["add", "@s.yaml"],
    code: 3,
    message: /interface 'usb3'/,
  },
  {
    name: "duplicate storage name in one file",
    files: { "s.yaml": "storage: [{name: d}, {name: d}]\n" },
    args: ["add", "@s.yaml"],
    code: 3,
    message: /duplicate storage name 'd'/,
  },
  {
    name: "singleton argument twice",
    files: { "s.yaml": "arguments: [{machine: q35}, {machine: pc}]\n" },
    args: ["add", "@s.yaml"],
    code: 3,
    message: /machine/,
  },
  {
    name: "bad --status filter",
    args: ["ls", "--status", "sleeping"],
    code: 3,
    message: /unknown status 'sleeping'/,
  },
];

for (const row of BAD_INPUT) {
  Deno.test(`bad input: ${row.name} → exit ${row.code}, one clear line, nothing written`, async () => {
    await withEnv(async (env) => {
      await env.ok(["add", "--empty", "--name", "taken"]);
      const before = env.snapshot();
      const args = [];
      for (const arg of row.args) {
        if (arg.startsWith("@")) args.push(await env.file(arg.slice(1), row.files![arg.slice(1)]));
        else args.push(arg);
      }
      const res = await env.run(args);
      assert.equal(res.code, row.code, res.stderr);
      assert.match(res.stderr, row.message);
      assert.equal(res.stderr.trim().split("\n").length, 1, `one line: ${res.stderr}`);
      assert.match(res.stderr, /^qvm: /);
      assert.equal(res.stdout, "");
      assert.equal(env.snapshot(), before);
    });
  });
}

Deno.test("a data dir whose qvm.db is not SQLite: clear error, exit 1, file untouched", async () => {
  await withEnv(async (env) => {
    await Deno.mkdir(env.dataDir, { recursive: true });
    const path = join(env.dataDir, "qvm.db");
    await Deno.writeTextFile(path, "hello, I am a text file\n");
    const res = await env.run(["ls"]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /is not an SQLite database \(left untouched\)/);
    assert.equal(await Deno.readTextFile(path), "hello, I am a text file\n");
    assert.deepEqual([...Deno.readDirSync(env.dataDir)].map((e) => e.name), ["qvm.db"]);
  });
});

Deno.test("--data-dir flag and QVM_DATA_DIR both choose the data dir", async () => {
  await withEnv(async (env) => {
    const other = join(env.root, "elsewhere");
    await env.ok(["--data-dir", other, "add", "--empty", "--name", "there"]);
    assert.deepEqual(JSON.parse(await env.ok(["ls", "--json"])), []);
    const there = JSON.parse(await env.ok(["ls", "--json", "--data-dir", other]));
    assert.equal(there[0].name, "there");
    assert.equal(Deno.statSync(other).mode! & 0o777, 0o700);
  });
});

Deno.test("ls --json prints one VM per line, and still lists a VM whose name was overwritten with a BLOB by hand", async () => {
  await withEnv(async (env) => {
    const ids: string[] = [];
    for (const name of ["b1", "a1"]) {
      ids.push((await env.ok(["add", await env.file(`${name}.yaml`, `name: ${name}\n`)])).trim());
    }
    const text = await env.ok(["ls", "--json"]);
    assert.equal(
      text,
      `[\n  ${
        JSON.stringify({ id: ids[1], name: "a1", status: "created", pid: null, stop_reason: null })
      },\n` +
        `  ${
          JSON.stringify({
            id: ids[0],
            name: "b1",
            status: "created",
            pid: null,
            stop_reason: null,
          })
        }\n]\n`,
    );
    const db = new DatabaseSync(join(env.dataDir, "qvm.db"));
    db.prepare("UPDATE vm_instances SET name = X'ff41' WHERE id = ?").run(ids[0]);
    db.close();
    const listed = JSON.parse(await env.ok(["ls", "--json"]));
    assert.deepEqual(listed.map((vm: { id: string }) => vm.id).sort(), [...ids].sort());
  });
});
