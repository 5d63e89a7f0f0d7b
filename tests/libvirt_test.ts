/**
 * `qvm export` and `qvm import-libvirt` against real libvirt 9 (a private libvirtd the fixture
 * starts), real QEMU under TCG and a real sshd on 127.0.0.1; and the round trip back to the same
 * QEMU command line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { exists, type QvmEnv, withEnv } from "./helpers/qvm.ts";
import { eventually, GUEST_READY_MARKER, guestConfig } from "./helpers/guest.ts";
import {
  type Libvirt,
  libvirtMissing,
  sh,
  sshdMissing,
  startLibvirt,
  startSshd,
} from "./fixture/libvirt.ts";

const missing = libvirtMissing();
if (missing) console.error(`libvirt tests skipped: ${missing}`);
const noSshd = missing ?? sshdMissing();
if (!missing && noSshd) console.error(`libvirt over ssh skipped: ${noSshd}`);
const noValidator = (await sh("sh", ["-c", "command -v virt-xml-validate"])).code !== 0;
if (noValidator) console.error("virt-xml-validate missing: exported XML is not schema-checked");

/** qvm's own parts of `start --dry-run`'s argv (they name this VM's files), left out to compare. */
const RUNTIME_OPTIONS = new Set(["-D", "-name", "-uuid", "-pidfile", "-qmp", "-trace"]);

function configArgv(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-daemonize") continue;
    if (RUNTIME_OPTIONS.has(arg)) {
      i++;
      continue;
    }
    if (arg === "-chardev" && argv[i + 1]?.includes("id=qvm-serial")) {
      i++;
      continue;
    }
    if (arg === "-serial" && argv[i + 1] === "chardev:qvm-serial") {
      i++;
      continue;
    }
    out.push(arg);
  }
  return out;
}

/**
 * `start --dry-run`'s argv without qvm's runtime options, and with what qvm derives from the VM's
 * id for its cloud sections (the NIC's MAC, the seed's folder, the agent's socket) written as ID.
 */
async function dryRun(env: QvmEnv, vm: string): Promise<string[]> {
  const { id, argv } = JSON.parse(await env.ok(["start", vm, "--dry-run", "--json"]));
  const hex = id.replaceAll("-", "").slice(0, 6);
  const mac = `52:54:00:${hex.slice(0, 2)}:${hex.slice(2, 4)}:${hex.slice(4, 6)}`;
  return configArgv(argv).map((a) =>
    a.replaceAll(`/cloud/${id}/`, "/cloud/ID/").replaceAll(`/${id}.ga`, "/ID.ga")
      .replaceAll(mac, "MAC")
  );
}

async function validates(file: string): Promise<void> {
  if (noValidator) return;
  const checked = await sh("virt-xml-validate", [file, "domain"]);
  assert.deepEqual(
    checked.code,
    0,
    `virt-xml-validate ${file}: ${checked.stdout}${checked.stderr}`,
  );
}

/** Fails unless `text` contains `part`, showing the text. */
function includes(text: string, part: string): void {
  assert.ok(text.includes(part), `expected ${JSON.stringify(part)} in:\n${text}`);
}

function uniqueName(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

/** Exports `vm`, imports it back under a new name, and checks both command lines are equal. */
async function roundTrip(
  env: QvmEnv,
  vm: string,
  options: { byElements?: boolean } = {},
): Promise<{ xml: string; stderr: string }> {
  const file = join(env.root, `${vm}.xml`);
  const exported = await env.run(["export", vm, "--format", "libvirt", "-o", file]);
  assert.deepEqual(exported.code, 0, exported.stderr);
  await validates(file);
  const imported = await env.run(["import-libvirt", file, "--name", `${vm}-back`, "--json"]);
  assert.deepEqual(imported.code, 0, imported.stderr);
  assert.deepEqual(JSON.parse(imported.stdout).exact, true);
  assert.deepEqual(await dryRun(env, `${vm}-back`), await dryRun(env, vm));
  if (options.byElements) {
    // Without qvm's metadata the config is read from the domain's elements alone.
    const plain = (await Deno.readTextFile(file)).replace(/<metadata>[\s\S]*<\/metadata>/, "");
    const plainFile = await env.file(`${vm}-plain.xml`, plain);
    const read = await env.run(["import-libvirt", plainFile, "--name", `${vm}-plain`, "--json"]);
    assert.deepEqual(read.code, 0, read.stderr);
    assert.deepEqual(JSON.parse(read.stdout).exact, false);
    assert.deepEqual(await dryRun(env, `${vm}-plain`), await dryRun(env, vm));
  }
  return { xml: await Deno.readTextFile(file), stderr: exported.stderr };
}

Deno.test("round trip: export, import-libvirt, start --dry-run gives the same QEMU command line", async (t) => {
  await withEnv(async (env) => {
    const share = await Deno.makeTempDir({ dir: env.root });
    const cases: Record<string, string> = {
      "the test guest": await Deno.readTextFile(await guestConfig(env, { name: "guest" })),
      "defaults only": "name: bare\n",
      "disks on every bus, options and a backing file": [
        "name: disks",
        "memory: 1G",
        "cpu: 2",
        "storage:",
        "  - {name: root, type: qcow2, size: 2G, interface: virtio, options: {cache: none}}",
        `  - {name: base, type: qcow2, size: 1G, file: ${env.root}/d/over.qcow2,`,
        `     backing_file: ${env.root}/d/base.qcow2, backing_format: qcow2}`,
        "  - {name: s1, type: raw, size: 10M, interface: sata}",
        "  - {name: s2, type: raw, size: 10M, interface: sata, options: {aio: threads}}",
        "  - {name: q1, type: qcow2, size: 10M, interface: scsi}",
        "  - {name: i1, type: raw, size: 10M, interface: ide}",
        "  - {name: n1, type: raw, size: 10M, interface: none}",
      ].join("\n"),
      "shares in each security model": [
        "name: shares",
        "storage:",
        `  - {name: a, type: virtfs, path: ${share}, mount_tag: a, security_model: passthrough}`,
        `  - {name: b, type: virtfs, path: ${share}, mount_tag: b, security_model: mapped-xattr,`,
        "     readonly: true}",
        `  - {name: c, type: virtfs, path: ${share}, mount_tag: c, security_model: mapped-file}`,
        `  - {name: d, type: virtfs, path: ${share}, mount_tag: d, security_model: none}`,
      ].join("\n"),
      "options libvirt has no element for": [
        "name: odd",
        "memory: 512M",
        "display: none",
        "vga: virtio",
        "binary: qemu-system-x86_64",
        "arguments:",
        "  - machine: {type: q35}",
        "  - enable-kvm",
        "  - nographic",
        "  - netdev: {user: null, id: n0, hostfwd: [tcp::2222-:22, tcp::8080-:80]}",
        "  - device: {virtio-net-pci: null, netdev: n0}",
        "  - rtc: {base: utc}",
        "  - no-acpi",
        "args: [-no-hpet, -global, 'kvm-pit.lost_tick_policy=discard', -nographic]",
      ].join("\n"),
      "network, cloud-init and the guest agent": [
        "name: cloud",
        "memory: 1G",
        "network:",
        '  ports: ["auto:22", "127.0.0.1:18080:80/tcp"]',
        "cloud_init:",
        "  user: dev",
        '  ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIPGM/+DDcbDIoWOwIS3xlxOmN x@y"]',
        "guest_agent: true",
      ].join("\n"),
      "memory and vCPUs as -m and -smp items": "name: items\narguments:\n  - m: 256\n  - smp: 2\n",
      "its own serial and an accelerator list": [
        "name: serial",
        "arguments:",
        "  - accel: kvm",
        "  - accel: tcg",
        "  - serial: mon:stdio",
      ].join("\n"),
    };
    for (const [what, yaml] of Object.entries(cases)) {
      await t.step(what, async () => {
        const file = await env.file(`${what.replaceAll(" ", "_")}.yaml`, yaml);
        const add = await env.run(["add", file]);
        assert.deepEqual(add.code, 0, add.stderr);
        const name = /^name: (\S+)/m.exec(yaml)![1];
        await roundTrip(env, name, { byElements: what === "the test guest" });
      });
    }
  });
});

Deno.test("export passes what libvirt cannot express to QEMU and lists it on stderr", async () => {
  await withEnv(async (env) => {
    const file = await env.file(
      "odd.yaml",
      "name: odd\narguments:\n  - netdev: {user: null, id: n0}\n  - device: e1000,netdev=n0\n" +
        "args: [-rtc, base=localtime]\n",
    );
    await env.ok(["add", file]);
    const { xml, stderr } = await roundTrip(env, "odd");
    for (const value of ["-netdev", "user,id=n0", "-device", "e1000,netdev=n0", "-rtc"]) {
      includes(xml, `<qemu:arg value="${value}"/>`);
    }
    includes(stderr, "'-netdev user,id=n0': passed to QEMU in <qemu:commandline>");
    includes(stderr, "'-rtc base=localtime'");
    assert.ok(!xml.includes('<interface type="user">'), "its own netdev replaces the default NIC");
  });
});

Deno.test("import-libvirt: a file that is not a domain exits 3 with one line", async () => {
  await withEnv(async (env) => {
    const cases: Record<string, string> = {
      "a network": "<network><name>default</name></network>",
      "not XML": "name: yaml\n",
      "broken XML": "<domain type='qemu'><name>x</name>",
      "an lxc domain": "<domain type='lxc'><name>c</name><memory>1024</memory></domain>",
      "an entity definition": "<!DOCTYPE d [<!ENTITY x 'y'>]><domain type='qemu'/>",
      "elements nested 100000 deep": `<domain type='qemu'><name>n</name>${
        "<x>".repeat(100_000) + "</x>".repeat(100_000)
      }</domain>`,
    };
    for (const [what, text] of Object.entries(cases)) {
      const file = await env.file(`${what.replaceAll(" ", "_")}.xml`, text);
      const result = await env.run(["import-libvirt", file]);
      assert.deepEqual(result.code, 3, `${what}: ${result.stderr}`);
      assert.deepEqual(result.stderr.trim().split("\n").length, 1, `${what}: ${result.stderr}`);
      includes(result.stderr, file);
    }
    const absent = await env.run(["import-libvirt", join(env.root, "nope.xml")]);
    assert.deepEqual(absent.code, 3);
    assert.ok(["", "[]"].includes(env.snapshot()), "no VM was defined");
  });
});

Deno.test("import-libvirt lists a device the domain repeats once, with its count", async () => {
  await withEnv(async (env) => {
    const file = await env.file(
      "many.xml",
      `<domain type='qemu'><name>many</name><devices>${
        "<watchdog model='i6300esb'/>".repeat(5000)
      }` +
        "<rng model='virtio'/></devices></domain>",
    );
    const result = await env.run(["import-libvirt", file]);
    assert.deepEqual(result.code, 0, result.stderr);
    const lines = result.stderr.trim().split("\n");
    assert.deepEqual(lines.length, 2, result.stderr);
    includes(lines[0], "device <watchdog> (5000 times)");
    includes(lines[1], "device <rng>");
  });
});

Deno.test("import-libvirt reads a hand-written domain and lists what it does not import", async () => {
  await withEnv(async (env) => {
    const file = await env.file(
      "hand.xml",
      `<?xml version="1.0"?>
<!-- written by hand -->
<domain type='qemu' xmlns:q='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>hand</name>
  <memory unit='GiB'>1</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><kernel>/k</kernel><cmdline>a=1 &amp; b</cmdline></os>
  <features><acpi/><apic/></features>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='${env.root}/hand.raw'/><target dev='sda' bus='sata'/></disk>
    <disk type='file' device='cdrom'><source file='/x.iso'/><target dev='sdb' bus='sata'/></disk>
    <interface type='network'><source network='default'/></interface>
    <graphics type='vnc'/>
  </devices>
  <q:commandline><q:arg value='-no-hpet'/></q:commandline>
</domain>`,
    );
    const result = await env.run(["import-libvirt", file]);
    assert.deepEqual(result.code, 0, result.stderr);
    assert.ok(!result.stderr.includes("sdb"), result.stderr);
    for (const part of ["interface of type 'network'", "<graphics>"]) {
      includes(result.stderr, part);
    }
    const argv = await dryRun(env, "hand");
    const expected = [
      "-m 1G -smp 2 -accel tcg -machine q35 -kernel /k -append",
      "a=1 & b",
      `-no-hpet -drive file=${env.root}/hand.raw,format=raw,if=none,id=sda`,
      "-device ahci,id=ahci0 -device ide-hd,drive=sda,bus=ahci0.0",
      "-drive file=/x.iso,format=raw,if=none,id=sdb,media=cdrom -device ide-cd,drive=sdb,bus=ahci0.1",
    ];
    const line = argv.slice(1).join(" ");
    for (const part of expected) includes(line, part);
  });
});

async function bootThroughLibvirt(
  env: QvmEnv,
  lv: Libvirt,
  options: { uri: string; name: string },
): Promise<void> {
  const { uri, name } = options;
  // A disk, a 9p share and a NIC passed through: libvirt and QEMU must take all three.
  const disk = join(env.root, `${name}.qcow2`);
  const made = await sh("qemu-img", ["create", "-q", "-f", "qcow2", disk, "16M"]);
  assert.equal(made.code, 0, made.stderr);
  const config = await guestConfig(env, {
    name,
    extra: [
      "  - netdev: {user: null, id: n0}",
      "  - device: e1000,netdev=n0",
      "storage:",
      `  - {name: data, type: qcow2, file: ${disk}}`,
      `  - {name: share, type: virtfs, path: ${env.root}, mount_tag: host0}`,
    ].join("\n"),
  });
  await env.ok(["add", config]);
  const xmlFile = join(env.root, `${name}.xml`);
  await env.ok(["export", name, "--format", "libvirt", "-o", xmlFile]);
  await validates(xmlFile);
  const exported = await env.run(["export", name, "--to", uri, "--start"]);
  assert.deepEqual(exported.code, 0, exported.stderr);
  assert.match(exported.stdout, new RegExp(`defined and started ${name} at `));
  includes(exported.stderr, "'-device e1000,netdev=n0': passed to QEMU in <qemu:commandline>");
  const defined = (await lv.virsh("dumpxml", name)).stdout;
  includes(defined, `<source file='${disk}'`);
  includes(defined, `<source dir='${env.root}'/>`);
  assert.deepEqual((await lv.virsh("domstate", name)).stdout.trim(), "running");
  const serialLog = join(lv.qemuLogDir, `${name}-serial0.log`);
  const ready = await eventually(async () => {
    try {
      return (await Deno.readTextFile(serialLog)).includes(GUEST_READY_MARKER);
    } catch {
      return false;
    }
  }, 90_000);
  assert(ready, `no '${GUEST_READY_MARKER}' in ${serialLog}`);

  // libvirt's own rewrite of the domain still imports as the VM it came from.
  const dumped = await env.file(`${name}-dumped.xml`, (await lv.virsh("dumpxml", name)).stdout);
  const back = await env.run(["import-libvirt", dumped, "--name", `${name}-back`, "--json"]);
  assert.equal(back.code, 0, back.stderr);
  assert.equal(JSON.parse(back.stdout).exact, true, back.stdout);
  assert.deepEqual(await dryRun(env, `${name}-back`), await dryRun(env, name));

  const again = await env.run(["export", name, "--to", uri]);
  assert.deepEqual(again.code, 1, again.stderr);
  assert.deepEqual(again.stderr.trim().split("\n").length, 1, again.stderr);
  includes(again.stderr, `a domain named '${name}' is already defined`);

  assert.deepEqual((await lv.virsh("shutdown", name)).code, 0);
  const off = await eventually(
    async () => (await lv.virsh("domstate", name)).stdout.trim() === "shut off",
    60_000,
  );
  assert(off, `${name} did not power off on ACPI shutdown`);
  assert.deepEqual((await lv.virsh("undefine", name)).code, 0);
  assert.ok(!(await lv.virsh("list", "--all", "--name")).stdout.includes(name));
}

Deno.test({
  name: "a VM exported to a real libvirtd boots, powers off on ACPI, and is undefined",
  ignore: missing !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withEnv(async (env) => {
      const lv = await startLibvirt();
      try {
        await bootThroughLibvirt(env, lv, { uri: lv.uri, name: uniqueName("lvt") });
      } finally {
        await lv.stop();
      }
    });
  },
});

Deno.test({
  name: "export --to qemu+ssh:// defines and starts the VM through sshd on 127.0.0.1",
  ignore: noSshd !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withEnv(async (env) => {
      const lv = await startLibvirt();
      try {
        const sshd = await startSshd(lv);
        try {
          await bootThroughLibvirt(env, lv, { uri: sshd.uri, name: uniqueName("lvs") });
        } finally {
          await sshd.stop();
        }
      } finally {
        await lv.stop();
      }
    });
  },
});

Deno.test({
  name: "export --to fails with one line and exit 1: unreachable, refused by libvirt, disk missing",
  ignore: missing !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withEnv(async (env) => {
      const lv = await startLibvirt();
      try {
        await env.ok(["add", "--empty", "--name", "plain"]);
        const unreachable = await env.run([
          "export",
          "plain",
          "--to",
          `qemu:///system?socket=${env.root}/no-such.sock`,
        ]);
        const bin = await env.file("nobin.yaml", "name: nobin\nbinary: /nonexistent/qemu\n");
        await env.ok(["add", bin]);
        const refused = await env.run(["export", "nobin", "--to", lv.uri]);
        const disk = await env.file(
          "disk.yaml",
          "name: withdisk\nstorage:\n  - {name: root, type: qcow2, size: 1G}\n",
        );
        await env.ok(["add", disk]);
        const noDisk = await env.run(["export", "withdisk", "--to", lv.uri]);
        const cases = { unreachable, refused, noDisk };
        for (const [what, result] of Object.entries(cases)) {
          assert.deepEqual(result.code, 1, `${what}: ${result.stderr}`);
          assert.deepEqual(result.stderr.trim().split("\n").length, 1, `${what}: ${result.stderr}`);
        }
        includes(unreachable.stderr, "cannot reach libvirt at");
        includes(refused.stderr, "refused 'nobin'");
        includes(noDisk.stderr, "does not exist here");
        assert.deepEqual((await lv.virsh("list", "--all", "--name")).stdout.trim(), "");
        const startAlone = await env.run(["export", "plain", "--start"]);
        assert.deepEqual(startAlone.code, 3);
        const badFormat = await env.run(["export", "plain", "--format", "ovf"]);
        assert.deepEqual(badFormat.code, 3);
      } finally {
        await lv.stop();
      }
    });
  },
});

Deno.test({
  name: "a cloud VM defined in libvirt and read back with virsh dumpxml is still qvm's own config",
  ignore: missing !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withEnv(async (env) => {
      const lv = await startLibvirt();
      try {
        const yaml = [
          "name: cloudy",
          "memory: 256M",
          "arguments: [{accel: tcg}]",
          "network:",
          '  ports: ["auto:22", "127.0.0.1:18081:80/tcp"]',
          "guest_agent: true",
        ].join("\n");
        await env.ok(["add", await env.file("cloudy.yaml", yaml)]);
        const file = join(env.root, "cloudy.xml");
        await env.ok(["export", "cloudy", "-o", file]);
        await validates(file);
        assert.deepEqual((await lv.virsh("define", file)).code, 0);
        const dumped = await lv.virsh("dumpxml", "cloudy");
        assert.deepEqual(dumped.code, 0, dumped.stderr);
        const back = await env.file("dumped.xml", dumped.stdout);
        const read = await env.run(["import-libvirt", back, "--name", "cloudy-back", "--json"]);
        assert.deepEqual(read.code, 0, read.stderr);
        // libvirt keeps one <metadata> element per namespace: qvm's two must both survive.
        assert.deepEqual(JSON.parse(read.stdout).exact, true, dumped.stdout);
        assert.deepEqual(await dryRun(env, "cloudy-back"), await dryRun(env, "cloudy"));
      } finally {
        await lv.stop();
      }
    });
  },
});

Deno.test({
  name:
    "exported XML keeps tabs and line breaks through xmllint, libvirt and back; a control character is refused",
  ignore: missing !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withEnv(async (env) => {
      const disk = join(env.root, "a\tb.qcow2");
      const share = join(env.root, "s\th");
      await Deno.mkdir(share);
      const append = "console=ttyS0\tquiet\nx=1\ry=2";
      const fwCfg = "name=opt/qvm/x,string=a\tb\nc";
      const yaml = [
        "name: spaced",
        "arguments:",
        "  - accel: tcg",
        "  - kernel: /boot/vmlinuz",
        `  - append: ${JSON.stringify(append)}`,
        "storage:",
        `  - {name: d, type: qcow2, size: 16M, file: ${JSON.stringify(disk)}}`,
        `  - {name: s, type: virtfs, path: ${
          JSON.stringify(share)
        }, mount_tag: s, security_model: none}`,
        `args: ["-fw_cfg", ${JSON.stringify(fwCfg)}]`,
      ].join("\n");
      await env.ok(["add", await env.file("spaced.yaml", yaml)]);
      const file = join(env.root, "spaced.xml");
      const exported = await env.run(["export", "spaced", "-o", file]);
      assert.equal(exported.code, 0, exported.stderr);
      const wellFormed = await sh("xmllint", ["--noout", file]);
      assert.equal(wellFormed.code, 0, wellFormed.stderr);
      await validates(file);
      // The values as the config has them, read back by qvm from its file and from libvirt's.
      const expect = async (vm: string) => {
        const config = JSON.parse(await env.ok(["inspect", vm, "--json"])).config;
        const args = config.arguments as Record<string, string>[];
        assert.equal(args.find((a) => "append" in a)?.append, append, vm);
        assert.equal(config.storage.find((d: { name: string }) => d.name === "d").file, disk, vm);
        assert.equal(config.storage.find((d: { name: string }) => d.name === "s").path, share, vm);
        assert.ok(
          JSON.stringify(config).includes(JSON.stringify(fwCfg).slice(1, -1)),
          `${vm}: ${JSON.stringify(config)}`,
        );
      };
      const plain = await env.file(
        "spaced-plain.xml",
        (await Deno.readTextFile(file)).replace(/<metadata>[\s\S]*<\/metadata>/, ""),
      );
      await env.ok(["import-libvirt", plain, "--name", "from-file"]);
      await expect("from-file");
      const lv = await startLibvirt();
      try {
        const defined = await lv.virsh("define", plain);
        assert.equal(defined.code, 0, defined.stderr);
        const dumped = await env.file("dumped.xml", (await lv.virsh("dumpxml", "spaced")).stdout);
        await env.ok(["import-libvirt", dumped, "--name", "from-libvirt"]);
        await expect("from-libvirt");
      } finally {
        await lv.stop();
      }

      await env.ok([
        "add",
        await env.file("ctl.yaml", 'name: ctl\narguments:\n  - append: "a\\x01b"\n'),
      ]);
      const out = join(env.root, "ctl.xml");
      const refused = await env.run(["export", "ctl", "-o", out]);
      assert.equal(refused.code, 3, refused.stderr);
      assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
      includes(refused.stderr, "<cmdline> holds U+0001");
      assert.ok(!exists(out), "no XML file was written");
      const printed = await env.run(["export", "ctl"]);
      assert.equal(printed.code, 3, printed.stderr);
      assert.equal(printed.stdout, "");
    });
  },
});

Deno.test("doctor reports virsh: its version, or a warning when it is missing", async () => {
  await withEnv(async (env) => {
    const bin = await Deno.makeTempDir({ dir: env.root });
    for (const tool of ["qemu-system-x86_64", "qemu-img"]) {
      const found = (await sh("sh", ["-c", `command -v ${tool}`])).stdout.trim();
      await Deno.symlink(found, join(bin, tool));
    }
    const without = await env.run(["doctor", "--json"], { env: { PATH: bin } });
    const check = JSON.parse(without.stdout).checks.find((c: { check: string }) =>
      c.check === "virsh"
    );
    assert.equal(check.status, "warning");
    includes(check.fix, "libvirt-clients");
    if (missing === undefined) {
      const withVirsh = JSON.parse((await env.run(["doctor", "--json"])).stdout).checks
        .find((c: { check: string }) => c.check === "virsh");
      assert.equal(withVirsh.status, "ok");
      assert.match(withVirsh.what, /^virsh: \d+\.\d+/);
    }
  });
});
