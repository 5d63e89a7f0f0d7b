/**
 * The cloud sections of a VM config (`network`, `cloud_init`, `guest_agent`): every rule of the
 * port spec and the cloud_init keys, table-tested; and through the real CLI, that bad input is one
 * line on stderr, exit 3, and no VM.
 */
import assert from "node:assert/strict";
import { UsageError } from "../../src/errors.ts";
import { networkOf, parsePortSpec, udpPortsBound } from "../../src/config/network.ts";
import { settleForwards } from "../../src/cloud/ports.ts";
import { execUser } from "../../src/vm/exec.ts";
import { cloudInitOf, isPublicKeyLine, isUserData } from "../../src/config/cloud_init.ts";
import { validateConfig } from "../../src/config/mod.ts";
import { withEnv } from "../helpers/qvm.ts";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJvYF6WH0vtFLZBV9mwwZ7b8I9cY1eTRyT8Hf0Pqsh0x a@b";
const noWarn = () => {};

Deno.test("port specs: HOST:GUEST, auto:GUEST, ADDRESS:HOST:GUEST, /tcp and /udp", () => {
  const cases: [string, ReturnType<typeof parsePortSpec>][] = [
    ["2222:22", { proto: "tcp", address: "127.0.0.1", host: 2222, guest: 22 }],
    ["8080:80/tcp", { proto: "tcp", address: "127.0.0.1", host: 8080, guest: 80 }],
    ["5353:53/udp", { proto: "udp", address: "127.0.0.1", host: 5353, guest: 53 }],
    ["auto:22", { proto: "tcp", address: "127.0.0.1", host: "auto", guest: 22 }],
    ["AUTO:22/UDP", { proto: "udp", address: "127.0.0.1", host: "auto", guest: 22 }],
    ["0.0.0.0:8080:80", { proto: "tcp", address: "0.0.0.0", host: 8080, guest: 80 }],
    ["10.1.2.3:auto:443", { proto: "tcp", address: "10.1.2.3", host: "auto", guest: 443 }],
    ["65535:1", { proto: "tcp", address: "127.0.0.1", host: 65535, guest: 1 }],
  ];
  for (const [spec, want] of cases) assert.deepEqual(parsePortSpec(spec), want, spec);
});

Deno.test("port specs that are malformed are refused with a message naming the spec", () => {
  const cases: [unknown, RegExp][] = [
    ["22", /use HOST:GUEST/],
    ["2222:", /use HOST:GUEST/],
    [":22", /use HOST:GUEST/],
    ["1:2:3:4", /use HOST:GUEST/],
    ["0:22", /host port '0' is not a number from 1 to 65535/],
    ["2222:65536", /guest port '65536'/],
    ["22a:22", /host port '22a'/],
    ["2222:22/sctp", /protocol 'sctp' is not tcp or udp/],
    ["2222:22/", /protocol '' is not tcp or udp/],
    ["auto:auto", /guest port 'auto'/],
    ["300.1.1.1:2222:22", /not an IPv4 address/],
    ["localhost:2222:22", /not an IPv4 address/],
    ["01.2.3.4:2222:22", /not an IPv4 address/],
    ["-1:22", /host port '-1'/],
    [2222, /expected a string such as "2222:22"/],
    [null, /expected a string, got nothing/],
    [{ host: 1 }, /expected a string, got a map/],
  ];
  for (const [spec, message] of cases) {
    assert.throws(() => parsePortSpec(spec), (e: Error) => {
      assert.ok(e instanceof UsageError, `${spec}: ${e}`);
      assert.match(e.message, message, String(spec));
      assert.ok(!e.message.includes("\n"));
      return true;
    });
  }
});

Deno.test("network: identical forwards are kept once; one host port twice is an error", () => {
  assert.deepEqual(networkOf({ ports: ["2222:22", "2222:22", "auto:22", "auto:22"] }, noWarn), {
    ports: [
      { proto: "tcp", address: "127.0.0.1", host: 2222, guest: 22 },
      { proto: "tcp", address: "127.0.0.1", host: "auto", guest: 22 },
    ],
  });
  assert.throws(
    () => networkOf({ ports: ["2222:22", "2222:80"] }, noWarn),
    /host port 2222\/tcp is already forwarded by '2222:22'/,
  );
  // The same number over udp is another port.
  assert.equal(networkOf({ ports: ["2222:22", "2222:22/udp"] }, noWarn).ports.length, 2);
  assert.deepEqual(networkOf({}, noWarn), { ports: [] });
  assert.throws(() => networkOf({ ports: "2222:22" }, noWarn), /expected a list/);
  assert.throws(() => networkOf(["2222:22"], noWarn), /invalid network/);
  const warnings: string[] = [];
  networkOf({ ports: [], mode: "bridge" }, (m) => warnings.push(m));
  assert.deepEqual(warnings, ["unknown key network.mode (ignored)"]);
});

Deno.test("public key lines: the type must match the key blob; private keys are not keys", () => {
  assert.ok(isPublicKeyLine(KEY));
  assert.ok(isPublicKeyLine(KEY.split(" ").slice(0, 2).join(" ")));
  assert.ok(!isPublicKeyLine(KEY.replace("ssh-ed25519", "ssh-rsa")));
  assert.ok(!isPublicKeyLine("ssh-ed25519 not-base64!"));
  assert.ok(!isPublicKeyLine("-----BEGIN OPENSSH PRIVATE KEY-----"));
  assert.ok(!isPublicKeyLine(""));
});

Deno.test("user_data must be a #cloud-config document or a script", () => {
  assert.ok(isUserData("#cloud-config\npackages: [jq]\n"));
  assert.ok(isUserData("#!/bin/sh\necho hi\n"));
  assert.ok(isUserData("\uFEFF#cloud-config\n"));
  assert.ok(!isUserData("packages: [jq]\n"));
  assert.ok(!isUserData("#cloud-config-archive\n"));
  assert.ok(!isUserData("# cloud-config\n"));
  assert.ok(!isUserData("#!\n"));
});

Deno.test("cloud_init: valid sections, files read into the config", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/id.pub`, `${KEY}\n# comment\n\n`);
    await Deno.writeTextFile(`${dir}/ud.yaml`, "#cloud-config\nruncmd: [touch /x]\n");
    assert.deepEqual(cloudInitOf({}, noWarn), {});
    assert.deepEqual(cloudInitOf(null, noWarn), {});
    assert.deepEqual(
      cloudInitOf({
        user: "dev",
        ssh_authorized_keys: [`${dir}/id.pub`, KEY],
        hostname: "web-1.lab",
        packages: ["jq", "curl=7.88.1-10"],
        runcmd: ["echo hi", ["touch", "/tmp/x"]],
      }, noWarn),
      {
        user: "dev",
        ssh_authorized_keys: [KEY, KEY],
        hostname: "web-1.lab",
        packages: ["jq", "curl=7.88.1-10"],
        runcmd: ["echo hi", ["touch", "/tmp/x"]],
      },
    );
    assert.deepEqual(cloudInitOf({ user_data: `${dir}/ud.yaml`, hostname: "h" }, noWarn), {
      hostname: "h",
      user_data: "#cloud-config\nruncmd: [touch /x]\n",
    });
    assert.deepEqual(cloudInitOf({ user_data: "#!/bin/sh\necho hi\n" }, noWarn), {
      user_data: "#!/bin/sh\necho hi\n",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cloud_init: each bad value is one UsageError line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/id_ed25519`, "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n");
    await Deno.writeTextFile(`${dir}/empty.pub`, "\n");
    await Deno.writeTextFile(`${dir}/plain.yaml`, "packages: [jq]\n");
    const cases: [unknown, RegExp][] = [
      [[], /expected a map/],
      [{ user: "root" }, /cloud_init.user 'root'/],
      [{ user: "Dev" }, /cloud_init.user 'Dev'/],
      [{ user: 7 }, /cloud_init.user .7./],
      [{ ssh_authorized_keys: KEY }, /expected a list/],
      [{ ssh_authorized_keys: ["hello"] }, /not an OpenSSH public key line nor a \.pub file/],
      [{ ssh_authorized_keys: [`${dir}/id_ed25519`] }, /is not an OpenSSH public key file/],
      [{ ssh_authorized_keys: [`${dir}/empty.pub`] }, /is not an OpenSSH public key file/],
      [{ ssh_authorized_keys: [`${dir}/missing.pub`] }, /missing\.pub' not found/],
      [{ ssh_authorized_keys: [dir] }, /is not a file/],
      [{ hostname: "web_1" }, /cloud_init.hostname 'web_1'/],
      [{ hostname: "-web" }, /cloud_init.hostname/],
      [{ hostname: "a".repeat(64) }, /cloud_init.hostname/],
      [{ packages: ["jq; rm -rf /"] }, /not a package name/],
      [{ packages: [""] }, /expected a non-empty string/],
      [{ runcmd: "echo" }, /cloud_init.runcmd 'echo': expected a list/],
      [{ runcmd: [[]] }, /runcmd\[0\]/],
      [{ runcmd: [3] }, /runcmd\[0\]/],
      [{ user_data: "packages: [jq]\nruncmd: []\n" }, /must start with '#cloud-config' or '#!'/],
      [{ user_data: `${dir}/plain.yaml` }, /plain\.yaml': it must start with/],
      [{ user_data: `${dir}/nope.yaml` }, /nope\.yaml' not found/],
      [{ user_data: "" }, /expected a file name or inline text/],
      [{ user: "dev", user_data: "#cloud-config\n" }, /cannot be combined with cloud_init.user/],
      [{ guest: 1, user_data: 5 }, /expected a file name/],
    ];
    for (const [section, message] of cases) {
      assert.throws(() => cloudInitOf(section, noWarn), (e: Error) => {
        assert.ok(e instanceof UsageError, `${JSON.stringify(section)}: ${e}`);
        assert.match(e.message, message, JSON.stringify(section));
        assert.ok(!e.message.includes("\n"), e.message);
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cloud_init.user may not be root or an account the guest keeps for itself", () => {
  for (
    const user of ["sshd", "daemon", "bin", "nobody", "www-data", "_apt", "systemd-network", "root"]
  ) {
    assert.throws(
      () => cloudInitOf({ user }, noWarn),
      (e: Error) => {
        assert.ok(e instanceof UsageError, String(e));
        assert.match(
          e.message,
          new RegExp(
            `^invalid cloud_init.user '${user}': it is an account the guest keeps for itself`,
          ),
        );
        return true;
      },
    );
  }
  assert.equal(cloudInitOf({ user: "dev" }, noWarn).user, "dev");
  assert.equal(cloudInitOf({ user: "debian" }, noWarn).user, "debian");
});

Deno.test("a user_data file that is not UTF-8 is refused, not changed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Latin-1 text: its é is one byte that is not UTF-8 (it would become U+FFFD).
    await Deno.writeFile(
      `${dir}/latin1.yaml`,
      Uint8Array.from([
        ...new TextEncoder().encode("#cloud-config\nwrite_files: [{path: /caf"),
        0xe9,
        ...new TextEncoder().encode(", content: x}]\n"),
      ]),
    );
    assert.throws(
      () => cloudInitOf({ user_data: `${dir}/latin1.yaml` }, noWarn),
      (e: Error) => {
        assert.ok(e instanceof UsageError, String(e));
        assert.match(e.message, /latin1\.yaml' is not UTF-8 text$/);
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validateConfig keeps the cloud sections and drops null ones", () => {
  const config = validateConfig({
    network: { ports: ["auto:22"] },
    cloud_init: { user: "dev", ssh_authorized_keys: [KEY] },
    guest_agent: false,
  });
  assert.deepEqual(config.network, {
    ports: [{ proto: "tcp", address: "127.0.0.1", host: "auto", guest: 22 }],
  });
  assert.deepEqual(config.cloud_init, { user: "dev", ssh_authorized_keys: [KEY] });
  assert.equal(config.guest_agent, false);
  const plain = validateConfig({ network: null, cloud_init: null, guest_agent: null });
  assert.ok(!("network" in plain) && !("cloud_init" in plain) && !("guest_agent" in plain));
  assert.throws(() => validateConfig({ guest_agent: "yes" }), /invalid guest_agent 'yes'/);
});

Deno.test("qvm add refuses bad cloud input with one line, exit 3, and no VM", async () => {
  await withEnv(async (env) => {
    const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const port = (busy.addr as Deno.NetAddr).port;
      await env.file("keys/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n");
      await env.file("keys/ok.pub", `${KEY}\n`);
      const cases: [string, RegExp][] = [
        ["network: {ports: ['22']}", /invalid port forward '22'/],
        ["network: {ports: ['2222:22/icmp']}", /protocol 'icmp'/],
        [
          `network: {ports: ['${port}:22']}`,
          new RegExp(`host port ${port} on 127.0.0.1 is already in use`),
        ],
        ["cloud_init: {ssh_authorized_keys: [keys/id_ed25519]}", /not an OpenSSH public key file/],
        ["cloud_init: {ssh_authorized_keys: [keys/gone.pub]}", /not found/],
        ["cloud_init: {user_data: 'hello: world'}", /not found|must start with/],
        ['cloud_init: {user_data: "x: 1\\ny: 2\\n"}', /must start with '#cloud-config' or '#!'/],
        ["image: images/gone.qcow2", /image '.*images\/gone\.qcow2' not found/],
        ["image: keys", /invalid image '.*keys': not a regular file/],
        ["image: 7", /invalid image '7': expected the path of a disk image/],
      ];
      for (const [yaml, message] of cases) {
        const file = await env.file("bad.yaml", `name: bad\n${yaml}\n`);
        const result = await env.run(["add", file]);
        assert.equal(result.code, 3, `${yaml}: ${result.stderr}`);
        assert.match(result.stderr, message, yaml);
        assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
        assert.equal(result.stdout, "");
      }
      assert.equal((await env.run(["ls", "--json"])).stdout.includes("bad"), false);
      // A relative image resolves against the config's folder.
      await env.file("images/base.qcow2", "");
      const imaged = await env.file("imaged.yaml", "name: imaged\nimage: images/base.qcow2\n");
      const imagedId = (await env.ok(["add", imaged])).trim();
      const imagedInfo = JSON.parse(await env.ok(["inspect", imagedId, "--json"]));
      assert.ok(JSON.stringify(imagedInfo).includes(`${env.root}/images/base.qcow2`));
      // A relative key file resolves against the config's folder.
      const good = await env.file(
        "good.yaml",
        "name: good\ncloud_init: {ssh_authorized_keys: [keys/ok.pub]}\n",
      );
      const id = (await env.ok(["add", good])).trim();
      const info = JSON.parse(await env.ok(["inspect", id, "--json"]));
      assert.equal(JSON.stringify(info).includes(KEY), true);
    } finally {
      busy.close();
    }
  });
});

Deno.test("qvm add refuses a UDP host port in use, a forward on a foreign address and a bare word as a key", async () => {
  await withEnv(async (env) => {
    // A UDP socket bound by another program, found in /proc/net/udp.
    const udp = new Deno.Command("python3", {
      args: [
        "-c",
        "import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n" +
        "s.bind(('127.0.0.1',0))\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)",
      ],
      stdout: "piped",
    }).spawn();
    try {
      const reader = udp.stdout.getReader();
      const { value } = await reader.read();
      const port = Number(new TextDecoder().decode(value).trim());
      assert.ok(port > 0);
      const cases: [string, RegExp][] = [
        [
          `network: {ports: ['${port}:53/udp']}`,
          new RegExp(`${port}:53/udp: host port ${port} on 127.0.0.1 is already in use`),
        ],
        [
          `network: {ports: ['0.0.0.0:${port}:53/udp']}`,
          new RegExp(`host port ${port} on 0.0.0.0 is already in use`),
        ],
        [
          "network: {ports: ['192.0.2.7:auto:22']}",
          /host address 192\.0\.2\.7 is not on this host/,
        ],
        ["network: {ports: ['192.0.2.7:5353:53/udp']}", /host address 192\.0\.2\.7 is not on/],
        [
          "cloud_init: {ssh_authorized_keys: [garbage]}",
          /'garbage': not an OpenSSH public key line/,
        ],
        ["cloud_init: {user_data: '#include x'}", /cloud_init.user_data: it must start with/],
      ];
      for (const [yaml, message] of cases) {
        const file = await env.file("bad.yaml", `name: bad\n${yaml}\n`);
        const result = await env.run(["add", file]);
        assert.equal(result.code, 3, `${yaml}: ${result.stderr}`);
        assert.match(result.stderr, message, yaml);
        assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      }
      assert.equal((await env.run(["ls", "--json"])).stdout.includes("bad"), false);
      // Another UDP port is free.
      const ok = await env.file("ok.yaml", "name: ok\nnetwork: {ports: ['auto:22', '1:53/udp']}\n");
      await env.ok(["add", ok]);
      await reader.cancel();
    } finally {
      udp.kill();
      await udp.status;
    }
  });
});

Deno.test("UDP ports bound by another program are seen per address; auto UDP forwards avoid them", async () => {
  const udp = new Deno.Command("python3", {
    args: [
      "-c",
      "import socket,time\nss=[]\nfor i in range(50):\n s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n" +
      " s.bind(('127.0.0.1',0)); ss.append(s)\nprint(ss[0].getsockname()[1],flush=True)\ntime.sleep(60)",
    ],
    stdout: "piped",
  }).spawn();
  try {
    const reader = udp.stdout.getReader();
    const port = Number(new TextDecoder().decode((await reader.read()).value).trim());
    await reader.cancel();
    assert.ok(udpPortsBound("127.0.0.1").has(port));
    assert.ok(udpPortsBound("0.0.0.0").has(port));
    assert.ok(!udpPortsBound("127.0.0.2").has(port));
    const bound = udpPortsBound("127.0.0.1");
    for (let i = 0; i < 20; i++) {
      const [forward] = settleForwards([
        { proto: "udp", address: "127.0.0.1", host: "auto", guest: 53 },
      ]);
      assert.ok(!bound.has(forward.host), String(forward.host));
    }
  } finally {
    udp.kill();
    await udp.status;
  }
});

Deno.test("exec runs as root on a VM whose user_data names no user qvm knows", () => {
  const userData = "#cloud-config\nusers: [{name: ops}]\n";
  const vm = validateConfig({ cloud_init: { user_data: userData } });
  assert.equal(execUser({}, { cloudInit: vm.cloud_init, fallback: "alice" }), undefined);
  assert.equal(execUser({ user: "ops" }, { cloudInit: vm.cloud_init, fallback: "alice" }), "ops");
  assert.equal(execUser({}, { cloudInit: { user: "dev" }, fallback: "alice" }), "dev");
});

Deno.test("qvm apply edits a cloud VM: its stored forwards, keys and user_data validate again", async () => {
  await withEnv(async (env) => {
    await env.file("keys/ok.pub", `${KEY}\n`);
    const image = `${env.root}/base.qcow2`;
    const made = await new Deno.Command("qemu-img", {
      args: ["create", "-q", "-f", "qcow2", image, "16M"],
    }).output();
    assert.ok(made.success);
    const cloud = await env.file(
      "cloud.yaml",
      [
        "name: cloud",
        `image: ${image}`,
        "network: {ports: ['auto:22', '127.0.0.1:auto:80/udp']}",
        "cloud_init: {user: dev, ssh_authorized_keys: [keys/ok.pub], runcmd: ['true']}",
        "",
      ].join("\n"),
    );
    await env.ok(["add", cloud]);
    const scripted = await env.file(
      "scripted.yaml",
      "name: scripted\nnetwork: {ports: ['auto:22']}\ncloud_init: {user_data: \"#!/bin/sh\\ntrue\\n\"}\n",
    );
    await env.ok(["add", scripted]);
    const before = JSON.parse(await env.ok(["inspect", "cloud", "--json"]));

    const memory = await env.run(["apply", "cloud", "--memory", "2G"]);
    assert.equal(memory.code, 0, memory.stderr);
    const script = await env.run(["apply", "scripted", "--cpu", "2"]);
    assert.equal(script.code, 0, script.stderr);
    // A file that repeats a forward the VM has keeps it once; a new one is added.
    const more = await env.file("more.yaml", "network: {ports: ['auto:22', 'auto:8080']}\n");
    for (let i = 0; i < 2; i++) {
      const applied = await env.run(["apply", "cloud", more]);
      assert.equal(applied.code, 0, applied.stderr);
    }
    const after = JSON.parse(await env.ok(["inspect", "cloud", "--json"]));
    const forwards = JSON.stringify(after.config.network.ports);
    assert.equal(forwards.match(/"guest":22/g)?.length, 1, forwards);
    assert.match(forwards, /"guest":8080/);
    assert.match(forwards, /"proto":"udp","address":"127.0.0.1","host":"auto","guest":80/);
    assert.deepEqual(after.config.cloud_init, before.config.cloud_init, "keys and runcmd kept");
    assert.equal(after.config.memory, "2G");
  });
});
