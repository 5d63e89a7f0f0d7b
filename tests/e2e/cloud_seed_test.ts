/**
 * What qvm adds to a cloud VM's start, as pure functions: the NoCloud seed's files and instance
 * id, the QEMU options (network, seed drive, guest agent), the ssh command line; then the real
 * ISO the seed tool writes, and (with the busybox test guest under real QEMU) the forwards in
 * effect and the waits that must give up.
 */
import assert from "node:assert/strict";
import {
  instanceId,
  isoArgv,
  seedDriveArgv,
  seedFiles,
  seedHostname,
  writeSeed,
} from "../../src/cloud/seed.ts";
import { macFor, networkArgv, settleForwards } from "../../src/cloud/ports.ts";
import { sshArgv } from "../../src/cloud/ssh.ts";
import { agentArgv, prepareCloud } from "../../src/cloud/mod.ts";
import { cloudPaths } from "../../src/vm_files.ts";
import { guestAddresses } from "../../src/cloud/agent.ts";
import { UsageError } from "../../src/errors.ts";
import { withEnv } from "../helpers/qvm.ts";
import { guestConfig, WAIT_READY } from "../helpers/guest.ts";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJvYF6WH0vtFLZBV9mwwZ7b8I9cY1eTRyT8Hf0Pqsh0x a@b";
const OWN = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBf9pF9cL7Q2f5nQfZ8d1xq5qk1yR1tJ2c3S4b5N6m7o qvm";

function userData(files: Record<string, string>): Record<string, unknown> {
  const [first, ...rest] = files["user-data"].split("\n");
  assert.equal(first, "#cloud-config");
  return JSON.parse(rest.join("\n"));
}

Deno.test("seed: meta-data, generated user-data and network-config", () => {
  const files = seedFiles({
    name: "web1",
    section: { user: "dev", packages: ["jq"], runcmd: ["echo hi", ["touch", "/x"]] },
    defaultUser: "someone",
    keys: { own: OWN, home: [KEY] },
    mac: "52:54:00:ab:cd:ef",
  });
  assert.deepEqual(Object.keys(files).sort(), ["meta-data", "network-config", "user-data"]);
  assert.deepEqual(JSON.parse(files["meta-data"]), {
    "instance-id": instanceId("web1", {
      user: "dev",
      packages: ["jq"],
      runcmd: ["echo hi", ["touch", "/x"]],
    }),
    "local-hostname": "web1",
  });
  const doc = userData(files);
  assert.equal(doc.hostname, "web1");
  assert.deepEqual(doc.packages, ["jq"]);
  assert.deepEqual(doc.runcmd, ["echo hi", ["touch", "/x"]]);
  const [user] = doc.users as Record<string, unknown>[];
  assert.equal(user.name, "dev");
  assert.equal(user.lock_passwd, true);
  // qvm's own key always; ~/.ssh keys because the section lists none.
  assert.deepEqual(user.ssh_authorized_keys, [OWN, KEY]);
  assert.deepEqual(JSON.parse(files["network-config"]), {
    version: 2,
    ethernets: {
      eth0: { match: { macaddress: "52:54:00:ab:cd:ef" }, "set-name": "eth0", dhcp4: true },
    },
  });
});

Deno.test("seed: listed keys replace ~/.ssh keys; defaults for user and hostname; no NIC, no network-config", () => {
  const files = seedFiles({
    name: "my_vm.lab",
    section: { ssh_authorized_keys: [KEY] },
    defaultUser: "alice",
    keys: { own: OWN, home: ["ssh-ed25519 AAAA home"] },
  });
  assert.equal(files["network-config"], undefined);
  const doc = userData(files);
  const [user] = doc.users as Record<string, unknown>[];
  assert.equal(user.name, "alice");
  assert.deepEqual(user.ssh_authorized_keys, [OWN, KEY]);
  assert.equal(doc.hostname, "my-vm-lab");
  assert.equal(JSON.parse(files["meta-data"])["local-hostname"], "my-vm-lab");
  assert.equal(doc.packages, undefined);
});

Deno.test("seed: user_data is passed through verbatim", () => {
  const script = "#!/bin/sh\necho 'quoted \"text\"'\n";
  const files = seedFiles({
    name: "s",
    section: { user_data: script, hostname: "box" },
    defaultUser: "alice",
    keys: { own: OWN, home: [] },
  });
  assert.equal(files["user-data"], script);
  assert.equal(JSON.parse(files["meta-data"])["local-hostname"], "box");
});

Deno.test("instance id changes when the cloud_init section changes, and only then", () => {
  const a = instanceId("web1", { user: "dev", packages: ["jq"] });
  assert.match(a, /^qvm-[0-9a-f]{16}$/);
  assert.equal(
    instanceId("web1", { packages: ["jq"], user: "dev" }),
    a,
    "key order is not a change",
  );
  assert.notEqual(instanceId("web1", { user: "dev", packages: ["jq", "curl"] }), a);
  assert.notEqual(instanceId("web1", { user: "ops", packages: ["jq"] }), a);
  assert.notEqual(
    instanceId("web2", { user: "dev", packages: ["jq"] }),
    a,
    "hostname defaults to the name",
  );
  assert.equal(
    instanceId("web2", { user: "dev", packages: ["jq"], hostname: "h" }),
    instanceId("web3", { user: "dev", packages: ["jq"], hostname: "h" }),
  );
});

Deno.test("host names made from VM names", () => {
  assert.equal(seedHostname("web-1", {}), "web-1");
  assert.equal(seedHostname("a_b.c", {}), "a-b-c");
  assert.equal(seedHostname("_x_", {}), "x");
  assert.equal(seedHostname("x", { hostname: "given.example" }), "given.example");
});

Deno.test("QEMU options: user networking with forwards, seed drive, agent channel", () => {
  assert.equal(macFor("0a1b2c3d-0000-4000-8000-000000000000"), "52:54:00:0a:1b:2c");
  assert.deepEqual(
    networkArgv([
      { proto: "tcp", address: "127.0.0.1", host: 2222, guest: 22 },
      { proto: "udp", address: "0.0.0.0", host: 5353, guest: 53 },
    ], "52:54:00:0a:1b:2c"),
    [
      "-netdev",
      "user,id=qvm-net,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:0.0.0.0:5353-:53",
      "-device",
      "virtio-net-pci,netdev=qvm-net,mac=52:54:00:0a:1b:2c",
    ],
  );
  assert.deepEqual(networkArgv([], "52:54:00:00:00:01")[1], "user,id=qvm-net");
  assert.deepEqual(seedDriveArgv({ kind: "iso", tool: "genisoimage", file: "/d/a,b/cidata.iso" }), [
    "-drive",
    "file=/d/a,,b/cidata.iso,if=virtio,format=raw,readonly=on",
  ]);
  assert.deepEqual(seedDriveArgv({ kind: "vvfat", dir: "/d/seed" }), [
    "-drive",
    "if=virtio,format=raw,readonly=on,file.driver=vvfat,file.dir=/d/seed,file.label=cidata",
  ]);
  assert.deepEqual(agentArgv("/run/x.ga"), [
    "-chardev",
    "socket,id=qvm-ga,path=/run/x.ga,server=on,wait=off",
    "-device",
    "virtio-serial-pci,id=qvm-vser",
    "-device",
    "virtserialport,bus=qvm-vser.0,chardev=qvm-ga,name=org.qemu.guest_agent.0",
  ]);
  assert.deepEqual(isoArgv("/usr/bin/xorriso", { files: ["/s/meta-data"], output: "/s.iso" }), [
    "/usr/bin/xorriso",
    "-as",
    "mkisofs",
    "-quiet",
    "-output",
    "/s.iso",
    "-volid",
    "cidata",
    "-joliet",
    "-rock",
    "/s/meta-data",
  ]);
});

Deno.test("ssh command line: port, user, key, per-VM known_hosts under a stable alias", () => {
  const target = {
    user: "dev",
    port: 40022,
    address: "0.0.0.0",
    key: "/d/ssh/id_ed25519",
    knownHosts: "/d/cloud/x/known_hosts",
    alias: "qvm-x",
  };
  assert.deepEqual(sshArgv(target, { command: ["cat", "/etc/hostname"] }), [
    "ssh",
    "-p",
    "40022",
    "-i",
    "/d/ssh/id_ed25519",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "UserKnownHostsFile=/d/cloud/x/known_hosts",
    "-o",
    "StrictHostKeyChecking=accept-new",
    "-o",
    "HostKeyAlias=qvm-x",
    "-o",
    "LogLevel=ERROR",
    "-l",
    "dev",
    "127.0.0.1",
    "--",
    "cat /etc/hostname",
  ]);
  // Several words reach the guest as those words; one word is a shell line as given.
  assert.deepEqual(
    sshArgv(target, { command: ["sh", "-c", "echo out; exit 7", "it's", ""] }).slice(-2),
    ["--", `sh -c 'echo out; exit 7' 'it'\\''s' ''`],
  );
  assert.deepEqual(sshArgv(target, { command: ["echo $HOME; exit 3"] }).slice(-2), [
    "--",
    "echo $HOME; exit 3",
  ]);
  const probe = sshArgv({ ...target, address: "10.0.0.5" }, { batch: true, connectTimeoutS: 5 });
  assert.deepEqual(
    probe.slice(-7),
    [
      "-o",
      "BatchMode=yes",
      "-o",
      "ConnectTimeout=5",
      "-l",
      "dev",
      "10.0.0.5",
    ],
  );
  assert.ok(!probe.includes("--"));
});

Deno.test("forwards at start: auto gets a free port; a fixed port in use is refused", () => {
  const settled = settleForwards([
    { proto: "tcp", address: "127.0.0.1", host: "auto", guest: 22 },
    { proto: "tcp", address: "127.0.0.1", host: "auto", guest: 80 },
  ]);
  assert.equal(typeof settled[0].host, "number");
  assert.notEqual(settled[0].host, settled[1].host);
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (busy.addr as Deno.NetAddr).port;
    assert.throws(
      () => settleForwards([{ proto: "tcp", address: "127.0.0.1", host: port, guest: 22 }]),
      (e: Error) => e instanceof UsageError && e.message.includes(`host port ${port}`),
    );
  } finally {
    busy.close();
  }
});

Deno.test("guest addresses leave out loopback", () => {
  assert.deepEqual(
    guestAddresses([
      {
        name: "lo",
        "ip-addresses": [{ "ip-address-type": "ipv4", "ip-address": "127.0.0.1", prefix: 8 }],
      },
      {
        name: "eth0",
        "ip-addresses": [{ "ip-address-type": "ipv4", "ip-address": "10.0.2.15", prefix: 24 }],
      },
      { name: "eth1" },
    ]),
    [{ interface: "eth0", family: "ipv4", address: "10.0.2.15", prefix: 24 }],
  );
});

Deno.test("the seed ISO is labelled cidata and holds the three files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const files = seedFiles({
      name: "iso",
      section: { user: "dev" },
      defaultUser: "x",
      keys: { own: OWN, home: [] },
      mac: "52:54:00:00:00:01",
    });
    const medium = await writeSeed(`${dir}/seed`, files);
    if (medium.kind === "vvfat") {
      // No ISO tool on this host: QEMU serves the folder itself.
      assert.equal(Deno.readTextFileSync(`${dir}/seed/meta-data`), files["meta-data"]);
      return;
    }
    const iso = await Deno.readFile(medium.file);
    // ISO 9660 primary volume descriptor at sector 16; volume id at byte 40, 32 bytes.
    const pvd = iso.subarray(16 * 2048);
    assert.equal(new TextDecoder().decode(pvd.subarray(1, 6)), "CD001");
    assert.equal(new TextDecoder().decode(pvd.subarray(40, 72)).trim(), "cidata");
    const text = new TextDecoder("latin1").decode(iso);
    for (const name of ["meta-data", "user-data", "network-config"]) {
      assert.ok(text.includes(name), name);
    }
    assert.ok(text.includes(JSON.parse(files["meta-data"])["instance-id"]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a VM with network and guest_agent starts under real QEMU: forwards in effect, waits give up", async () => {
  await withEnv(async (env) => {
    const config = await guestConfig(env, {
      name: "net1",
      extra: "network: {ports: ['auto:22', 'auto:80']}\nguest_agent: true",
    });
    await env.ok(["add", config]);
    const configured = JSON.parse(await env.ok(["ports", "net1", "--json"]));
    assert.deepEqual(configured.forwards.map((f: { host_port: unknown }) => f.host_port), [
      "auto",
      "auto",
    ]);
    const dry = JSON.parse(await env.ok(["start", "net1", "--dry-run", "--json"])).argv as string[];
    assert.ok(
      dry.includes("user,id=qvm-net,hostfwd=tcp:127.0.0.1:0-:22,hostfwd=tcp:127.0.0.1:0-:80"),
      dry.join(" "),
    );
    assert.ok(
      dry.includes("virtserialport,bus=qvm-vser.0,chardev=qvm-ga,name=org.qemu.guest_agent.0"),
    );
    await env.ok(["start", "net1", ...WAIT_READY]);
    const ports = JSON.parse(await env.ok(["ports", "net1", "--json"]));
    assert.equal(ports.running, true);
    const [ssh, http] = ports.forwards;
    assert.equal(ssh.guest_port, 22);
    assert.equal(typeof ssh.host_port, "number");
    // QEMU listens on the picked port: nobody else can take it now.
    assert.throws(
      () => Deno.listen({ hostname: "127.0.0.1", port: ssh.host_port }),
      Deno.errors.AddrInUse,
    );
    assert.equal(
      (await env.ok(["ports", "net1"])).trim().split("\n")[1],
      `127.0.0.1:${http.host_port} -> 80/tcp`,
    );
    const status = await env.status("net1");
    assert.deepEqual(status.forwards.map((f: { host: number }) => f.host), [
      ssh.host_port,
      http.host_port,
    ]);
    assert.equal(status.addresses, null, "the busybox guest runs no agent");
    // The busybox guest has neither an agent nor sshd: both give up with a clear message.
    const exec = await env.run(["exec", "net1", "--timeout", "2", "--", "true"]);
    assert.equal(exec.code, 2, exec.stderr);
    assert.match(exec.stderr, /guest agent did not answer/);
    await env.ok(["stop", "net1", "--force"]);
    const again = await env.run(["start", "net1", "--wait-for", "agent", "--timeout", "3"]);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /did not answer over agent in time/);
    const notRunning = await env.run(["ssh", "net1", "--", "true"]);
    assert.equal(notRunning.code, 3, notRunning.stderr);
  });
});

Deno.test("forwards on every host address (0.0.0.0, or hostfwd without one) are warned about at add and start, marked in ls", async () => {
  await withEnv(async (env) => {
    const config = await guestConfig(env, {
      name: "open1",
      extra: "network: {ports: ['0.0.0.0:auto:22', 'auto:80']}\n" +
        "args: [-netdev, 'user,id=n9,hostfwd=tcp::0-:8080', -device, 'virtio-net-pci,netdev=n9']",
    });
    const add = await env.run(["add", config]);
    assert.equal(add.code, 0, add.stderr);
    const warned = (text: string) => {
      const lines = text.trim().split("\n").filter((l) => l.includes("every address of this host"));
      assert.equal(lines.length, 2, text);
      assert.match(lines[0], /^qvm: warning: port forward 0\.0\.0\.0:auto:22\/tcp listens on/);
      assert.match(lines[1], /port forward hostfwd=tcp::0-:8080 listens on every address/);
    };
    warned(add.stderr);
    const start = await env.run(["start", "open1", ...WAIT_READY]);
    assert.equal(start.code, 0, start.stderr);
    warned(start.stderr);
    const ports = JSON.parse(await env.ok(["ports", "open1", "--json"])).forwards;
    const ssh = ports.find((f: { guest_port: number }) => f.guest_port === 22).host_port;
    const ls = await env.run(["ls"]);
    assert.match(ls.stdout, new RegExp(`^open1\\s.*0\\.0\\.0\\.0:${ssh} \\(exposed\\)`, "m"));
    assert.match(ls.stderr, new RegExp(`open1 forwards 0\\.0\\.0\\.0:${ssh} -> 22/tcp on every`));
    assert.doesNotMatch(ls.stderr, /-> 80\/tcp/, "127.0.0.1 is not every address");
    const json = JSON.parse(await env.ok(["ls", "--json"]));
    // ls --json keeps its shape: the mark is the table's only.
    assert.ok(
      !("ssh" in json[0]) && !JSON.stringify(json).includes("exposed"),
      JSON.stringify(json),
    );
    await env.ok(["stop", "open1", "--force"]);
    const quiet = await env.run([
      "add",
      await guestConfig(env, { name: "closed1", extra: "network: {ports: ['auto:22']}" }),
    ]);
    assert.equal(quiet.stderr, "");
  });
});

Deno.test("a fixed forward whose port was taken since add is refused at start, nothing launched", async () => {
  await withEnv(async (env) => {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const config = await guestConfig(env, {
      name: "busy1",
      extra: `network: {ports: ['${port}:22']}`,
    });
    await env.ok(["add", config]);
    const busy = Deno.listen({ hostname: "127.0.0.1", port });
    try {
      const result = await env.run(["start", "busy1", ...WAIT_READY]);
      assert.equal(result.code, 3, result.stderr);
      assert.match(result.stderr, new RegExp(`host port ${port} on 127.0.0.1 is already in use`));
      assert.equal(result.stderr.trim().split("\n").length, 1);
      const status = await env.status("busy1");
      assert.equal(status.pid, null);
    } finally {
      busy.close();
    }
  });
});

Deno.test("prepareCloud: seed, forwards and key made at start; a changed section forgets old host keys", async () => {
  const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "qvmc-" });
  try {
    const dirs = { dataDir: `${root}/data`, runtimeDir: `${root}/run` };
    await Deno.mkdir(dirs.dataDir, { mode: 0o700 });
    const id = "0a1b2c3d-1111-4222-8333-444455556666";
    const vm = (section: Record<string, unknown>) => ({
      id,
      name: "prep1",
      config: {
        arguments: [],
        args: [],
        storage: [],
        network: {
          ports: [{
            proto: "tcp" as const,
            address: "127.0.0.1",
            host: "auto" as const,
            guest: 22,
          }],
        },
        cloud_init: section,
      },
    });
    const argv = await prepareCloud({ dirs }, vm({ user: "dev" }));
    const paths = cloudPaths(dirs, id);
    const netdev = argv[argv.indexOf("-netdev") + 1];
    const [forward] = JSON.parse(await Deno.readTextFile(paths.forwardsFile));
    assert.equal(netdev, `user,id=qvm-net,hostfwd=tcp:127.0.0.1:${forward.host}-:22`);
    assert.ok(argv.includes("virtio-net-pci,netdev=qvm-net,mac=52:54:00:0a:1b:2c"));
    assert.ok(argv.some((a) => a.includes("cidata") || a.includes(paths.seedDir)), argv.join(" "));
    assert.ok(
      argv.includes("virtserialport,bus=qvm-vser.0,chardev=qvm-ga,name=org.qemu.guest_agent.0"),
    );
    // qvm's key pair was made, private key 0600, and put in the seed.
    const key = await Deno.stat(`${dirs.dataDir}/ssh/id_ed25519`);
    assert.equal(key.mode! & 0o777, 0o600);
    const own = (await Deno.readTextFile(`${dirs.dataDir}/ssh/id_ed25519.pub`)).trim();
    const userData = await Deno.readTextFile(`${paths.seedDir}/user-data`);
    assert.ok(userData.includes(own));
    const first = (await Deno.readTextFile(paths.instanceIdFile)).trim();
    // Same section: same instance, known hosts kept.
    await Deno.writeTextFile(paths.knownHosts, "qvm-x ssh-ed25519 AAAA\n");
    await prepareCloud({ dirs }, vm({ user: "dev" }));
    assert.equal((await Deno.readTextFile(paths.instanceIdFile)).trim(), first);
    assert.ok(await Deno.stat(paths.knownHosts));
    // Changed section: a new instance, whose new host keys must not clash with the old ones.
    await prepareCloud({ dirs }, vm({ user: "dev", packages: ["jq"] }));
    assert.notEqual((await Deno.readTextFile(paths.instanceIdFile)).trim(), first);
    await assert.rejects(() => Deno.stat(paths.knownHosts), Deno.errors.NotFound);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("without genisoimage or xorriso the seed is a vvfat drive labelled cidata, and QEMU takes it", async () => {
  await withEnv(async (env) => {
    // A PATH with QEMU and ssh-keygen but no ISO tool.
    const bin = `${env.root}/bin`;
    await Deno.mkdir(bin);
    for (const tool of ["qemu-system-x86_64", "qemu-img", "ssh-keygen"]) {
      const found = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`] }).output();
      await Deno.symlink(new TextDecoder().decode(found.stdout).trim(), `${bin}/${tool}`);
    }
    const run = (args: string[]) => env.run(args, { env: { PATH: bin } });
    const config = await guestConfig(env, { name: "fat1", extra: "cloud_init: {user: dev}" });
    assert.equal((await run(["add", config])).code, 0);
    const started = await run(["start", "fat1", ...WAIT_READY]);
    assert.equal(started.code, 0, started.stderr);
    const blocks = JSON.parse((await run(["qmp", "run", "fat1", "query-block"])).stdout);
    const seed = JSON.stringify(blocks);
    assert.match(seed, /vvfat/, seed);
    assert.match(seed, /"ro":true/);
    const id = JSON.parse((await run(["status", "fat1", "--json"])).stdout).id;
    const meta = await Deno.readTextFile(`${env.dataDir}/cloud/${id}/seed/meta-data`);
    assert.equal(JSON.parse(meta)["local-hostname"], "fat1");
    await run(["stop", "fat1", "--force"]);
  });
});

Deno.test("image: the root disk is an overlay made at first start; the image is never written", async () => {
  await withEnv(async (env) => {
    const base = `${env.root}/base.qcow2`;
    const made = await new Deno.Command("qemu-img", {
      args: ["create", "-q", "-f", "qcow2", base, "32M"],
    }).output();
    assert.ok(made.success);
    const before = await Deno.readFile(base);
    const config = await guestConfig(env, { name: "img1", extra: `image: ${base}` });
    const id = (await env.ok(["add", config])).trim();
    const dry = JSON.parse(await env.ok(["start", "img1", "--dry-run", "--json"])).argv as string[];
    const overlay = `${env.dataDir}/disks/${id}/image-overlay.qcow2`;
    assert.ok(dry.includes(`if=none,id=qvm-root,file=${overlay},format=qcow2`), dry.join(" "));
    assert.ok(dry.includes("virtio-blk-pci,drive=qvm-root"));
    await env.ok(["start", "img1", ...WAIT_READY]);
    const info = JSON.parse(
      new TextDecoder().decode(
        (await new Deno.Command("qemu-img", {
          args: ["info", "-U", "--output=json", overlay],
        }).output()).stdout,
      ),
    );
    assert.equal(info["backing-filename"], base);
    assert.equal(info["backing-filename-format"], "qcow2");
    assert.equal(info["virtual-size"], 32 * 1024 * 1024);
    const blocks = JSON.stringify(JSON.parse(await env.ok(["qmp", "run", "img1", "query-block"])));
    assert.ok(blocks.includes(overlay), blocks);

    // A second VM may not take img1's running root disk as its image: not at add (from the
    // config or --image, also through a symlink), nor at start when it was added meanwhile.
    const other = await guestConfig(env, {
      name: "img2",
      extra: `image: ${overlay}\nallowed_backing_files: [${base}]`,
    });
    await Deno.symlink(overlay, `${env.root}/link.qcow2`);
    for (
      const argv of [
        ["add", other],
        ["add", "--name", "img3", "--image", `${env.root}/link.qcow2`],
      ]
    ) {
      const early = await env.run(argv);
      assert.equal(early.code, 3, early.stderr);
      assert.match(early.stderr, /is a disk that running VM 'img1' writes to/);
      assert.equal(early.stderr.trim().split("\n").length, 1);
    }
    const listed = await env.ok(["ls", "--json"]);
    assert.ok(!listed.includes("img2") && !listed.includes("img3"), listed);

    // Restarting reuses the overlay; the image is byte for byte what it was.
    await env.ok(["stop", "img1", "--force"]);
    await env.ok(["add", other]);
    await env.ok(["start", "img1", ...WAIT_READY]);
    const refused = await env.run(["start", "img2", ...WAIT_READY]);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, /is a disk that running VM 'img1' writes to/);
    assert.equal(refused.stderr.trim().split("\n").length, 1);
    await env.ok(["stop", "img1", "--force"]);
    assert.deepEqual(await Deno.readFile(base), before);
    // img2 uses img1's root disk as its image: rm keeps it until img2 is gone too.
    const kept = await env.run(["rm", "img1", "--delete-storage"]);
    assert.equal(kept.code, 0, kept.stderr);
    assert.match(kept.stderr, /kept .*image-overlay\.qcow2: VM 'img2' uses it \(image:\)/);
    assert.ok((await Deno.stat(overlay)).isFile);
    await env.ok(["rm", "img2", "--delete-storage"]);
    assert.ok(
      (await Deno.stat(overlay)).isFile,
      "img2 did not make it: it is not img2's to delete",
    );
  });
});

Deno.test("start --wait-for ssh or agent that cannot succeed is refused before QEMU is launched", async () => {
  await withEnv(async (env) => {
    const config = await guestConfig(env, {
      name: "nowait",
      extra: "network: {ports: ['auto:80', 'auto:22/udp']}\nguest_agent: false",
    });
    await env.ok(["add", config]);
    for (
      const [kind, message] of [
        ["ssh", /forwards no host port to guest port 22/],
        ["agent", /has no guest agent channel/],
      ] as const
    ) {
      const result = await env.run(["start", "nowait", "--wait-for", kind, "--timeout", "30"]);
      assert.equal(result.code, 3, result.stderr);
      assert.match(result.stderr, message);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      const status = await env.status("nowait");
      assert.equal(status.status, "created", JSON.stringify(status));
      assert.equal(status.stop_reason, null);
    }
  });
});

Deno.test("image: one that has gone since add is refused at start with one line, exit 3, nothing made", async () => {
  await withEnv(async (env) => {
    const base = `${env.root}/gone.qcow2`;
    const made = await new Deno.Command("qemu-img", {
      args: ["create", "-q", "-f", "qcow2", base, "32M"],
    }).output();
    assert.ok(made.success);
    const config = await guestConfig(env, { name: "gone1", extra: `image: ${base}` });
    const id = (await env.ok(["add", config])).trim();
    await Deno.remove(base);
    const missing = await env.run(["start", "gone1"]);
    assert.equal(missing.code, 3, missing.stderr);
    assert.match(missing.stderr, /image '.*gone\.qcow2' not found/);
    assert.equal(missing.stderr.trim().split("\n").length, 1, missing.stderr);
    await Deno.mkdir(base);
    const folder = await env.run(["start", "gone1"]);
    assert.equal(folder.code, 3, folder.stderr);
    assert.match(folder.stderr, /not a regular file/);
    await assert.rejects(() => Deno.stat(`${env.dataDir}/disks/${id}`), Deno.errors.NotFound);
    assert.equal((await env.status("gone1")).status, "created");
  });
});

Deno.test("clone: a stopped VM's config under a new name, with a root disk of its own", async () => {
  await withEnv(async (env) => {
    const base = `${env.root}/base.qcow2`;
    assert.ok(
      (await new Deno.Command("qemu-img", { args: ["create", "-q", "-f", "qcow2", base, "16M"] })
        .output()).success,
    );
    const config = await guestConfig(env, {
      name: "orig",
      extra: `image: ${base}\ncloud_init: {user: dev}\nnetwork: {ports: ['auto:22']}`,
    });
    const origId = (await env.ok(["add", config])).trim();
    await env.ok(["start", "orig", ...WAIT_READY]);
    const running = await env.run(["clone", "orig", "copy"]);
    assert.equal(running.code, 1, running.stderr);
    assert.match(running.stderr, /VM 'orig' is running: stop it before clone/);
    await env.ok(["stop", "orig", "--force"]);

    const copyId = (await env.ok(["clone", "orig", "copy"])).trim();
    assert.notEqual(copyId, origId);
    const orig = JSON.parse(await env.ok(["inspect", "orig", "--json"]));
    const copy = JSON.parse(await env.ok(["inspect", "copy", "--json"]));
    const configOf = (vm: { config: Record<string, unknown> }) => ({ ...vm.config, name: null });
    assert.deepEqual(configOf(copy), configOf(orig));
    assert.equal(copy.config.name, "copy");
    // Both run at once, each on its own overlay of the same image, each with its own host name.
    await env.ok(["start", "orig", ...WAIT_READY]);
    await env.ok(["start", "copy", ...WAIT_READY]);
    for (const id of [origId, copyId]) {
      const overlay = `${env.dataDir}/disks/${id}/image-overlay.qcow2`;
      assert.ok((await Deno.stat(overlay)).isFile, overlay);
      const meta = JSON.parse(await Deno.readTextFile(`${env.dataDir}/cloud/${id}/seed/meta-data`));
      assert.equal(meta["local-hostname"], id === origId ? "orig" : "copy");
    }

    const taken = await env.run(["clone", "orig", "copy"]);
    assert.equal(taken.code, 3, taken.stderr);
    assert.match(taken.stderr, /a VM named 'copy' already exists/);
    const badName = await env.run(["clone", "orig", "no/slash"]);
    assert.equal(badName.code, 3, badName.stderr);
    const missing = await env.run(["clone", "nosuch", "x1"]);
    assert.equal(missing.code, 3, missing.stderr);
    const fixed = await guestConfig(env, {
      name: "fixed",
      extra: `storage:\n  - name: data\n    file: ${env.root}/data.qcow2\n    size: 16M`,
    });
    await env.ok(["add", fixed]);
    // A fixed file is not shared: the clone's disk lives in its own folder.
    await env.ok(["clone", "fixed", "fixed2"]);
    const fixed2 = JSON.parse(await env.ok(["inspect", "fixed2", "--json"]));
    assert.equal(fixed2.config.storage[0].file, undefined);
  });
});
