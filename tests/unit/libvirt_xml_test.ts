/** The pure libvirt core: the XML reader and writer, a config as a domain, a domain as a config. */
import assert from "node:assert/strict";
import { validateConfig, type VmConfig } from "../../src/config/mod.ts";
import { UsageError } from "../../src/errors.ts";
import {
  domainToConfig,
  domainXml,
  exposureOf,
  refuseSystemWrites,
} from "../../src/libvirt/mod.ts";
import {
  child,
  el,
  parseXml,
  textOf,
  writeXml,
  XmlCharError,
  XmlSyntaxError,
} from "../../src/libvirt/xml.ts";

const ID = "0b1f6a3e-8a52-4d3c-9a8e-1f2b3c4d5e6f";

function exported(raw: Record<string, unknown>, name = "vm1") {
  const config: VmConfig = validateConfig(raw);
  return domainXml({ id: ID, name, config }, { diskDir: "/d" });
}

Deno.test("parseXml reads entities, character references, CDATA and comments", () => {
  const root = parseXml(
    `\ufeff<?xml version="1.0"?>\n<!-- c --><a x='1 &amp; 2' y="&lt;&#65;&#x42;">` +
      `t&gt;<![CDATA[<raw>&]]><!-- in --><b/></a>\n`,
  );
  assert.equal(root.name, "a");
  assert.deepEqual(root.attrs, { x: "1 & 2", y: "<AB" });
  assert.equal(textOf(root), "t><raw>&");
  assert.equal(child(root, "b")?.name, "b");
});

Deno.test("parseXml refuses malformed documents and any DOCTYPE", () => {
  const bad = [
    "",
    "just text",
    "<a>",
    "<a></b>",
    "<a x=1/>",
    "<a x='1' x='2'/>",
    "<a/><b/>",
    "<a>&unknown;</a>",
    "<a>&amp</a>",
    "<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>",
    "<a x='<'/>",
  ];
  for (const text of bad) {
    assert.throws(() => parseXml(text), XmlSyntaxError, JSON.stringify(text));
  }
});

Deno.test("writeXml escapes every value; parseXml reads back the same tree", () => {
  const tricky = `a&b<c>"d'e ,, \u00e9`;
  const root = el("r", { v: tricky }, [el("t", {}, [tricky]), el("e")]);
  const again = parseXml(writeXml(root));
  assert.equal(again.attrs.v, tricky);
  assert.equal(textOf(child(again, "t")), tricky);
});

Deno.test("writeXml keeps tabs, line feeds and carriage returns through an XML 1.0 reader", () => {
  const value = "a\tb\nc\rd\r\ne";
  const written = writeXml(el("r", { v: value }, [el("t", {}, [value])]));
  // Literal in an attribute, a reader turns each into a space; in text, a CR into a line feed.
  assert.ok(!/v="[^"]*[\t\n\r]/.test(written), written);
  assert.ok(written.includes('v="a&#9;b&#10;c&#13;d&#13;&#10;e"'), written);
  assert.ok(written.includes("<t>a\tb\nc&#13;d&#13;\ne</t>"), written);
  const again = parseXml(written);
  assert.equal(again.attrs.v, value);
  assert.equal(child(again, "t")?.children.join(""), value);
});

Deno.test("parseXml reads CR LF as a line feed and keeps what libvirt's dumpxml writes literally", () => {
  const root = parseXml("<a v='x\ty\nz\rw' r='&#9;&#10;&#13;'>1\r\n2\r3</a>");
  assert.equal(root.attrs.v, "x\ty\nz\rw");
  assert.equal(root.attrs.r, "\t\n\r");
  assert.equal(root.children.join(""), "1\n2\r3");
});

Deno.test("writeXml and parseXml refuse the characters XML 1.0 cannot carry", () => {
  for (
    const bad of ["\u0000", "\u0001", "\u0008", "\u000b", "\u000c", "\u001f", "\ufffe", "\ud800"]
  ) {
    assert.throws(() => writeXml(el("r", { v: `a${bad}b` })), XmlCharError, JSON.stringify(bad));
    assert.throws(() => writeXml(el("r", {}, [`a${bad}b`])), XmlCharError, JSON.stringify(bad));
    assert.throws(() => parseXml(`<r>a${bad}b</r>`), XmlSyntaxError, JSON.stringify(bad));
  }
  for (const ref of ["&#1;", "&#x1F;", "&#xFFFE;", "&#xD800;", "&#0;"]) {
    assert.throws(() => parseXml(`<r v='${ref}'/>`), XmlSyntaxError, ref);
  }
  try {
    writeXml(el("qemu:arg", { value: "x\u0007" }));
    assert.fail("no error");
  } catch (e) {
    assert.ok(e instanceof XmlCharError);
    assert.match(e.message, /^<qemu:arg value> holds U\+0007/);
  }
});

Deno.test("domainXml refuses a control character in the kernel command line with a UsageError", () => {
  assert.throws(
    () => exported({ arguments: [{ kernel: "/k" }, { append: "console=ttyS0\u0001" }] }, "ctl"),
    (err: Error) => err instanceof UsageError && /'ctl'.*<cmdline> holds U\+0001/.test(err.message),
  );
  // Tabs and line breaks are kept, escaped where a reader would change them.
  const { xml } = exported(
    {
      arguments: [{ kernel: "/k" }, { append: "a\tb\nc" }],
      storage: [{ name: "d", type: "raw", file: "/x/a\tb.raw" }],
    },
    "ok",
  );
  assert.ok(xml.includes('<source file="/x/a&#9;b.raw"/>'), xml);
  const read = domainToConfig(xml.replace(/<metadata>[\s\S]*<\/metadata>/, ""));
  assert.deepEqual(read.config.arguments, [{ accel: "kvm" }, { kernel: "/k" }, {
    append: "a\tb\nc",
  }]);
  assert.equal((read.config.storage as { file: string }[])[0].file, "/x/a\tb.raw");
});

Deno.test("domainXml maps each config part to its libvirt element", () => {
  // A backing file must exist when a config is validated.
  const base = Deno.makeTempFileSync({ suffix: ".qcow2" });
  const cases: [string, Record<string, unknown>, string[], string[]][] = [
    ["tcg is type qemu", { arguments: [{ accel: "tcg" }] }, ['<domain type="qemu"'], []],
    ["no accelerator is kvm", {}, ['<domain type="kvm"', '<memory unit="MiB">128</memory>'], []],
    ["enable-kvm is kvm", { arguments: ["enable-kvm"] }, ['<domain type="kvm"'], ["<qemu:"]],
    [
      "memory units",
      { memory: "2G", cpu: 3 },
      ['<memory unit="GiB">2</memory>', "<vcpu>3</vcpu>"],
      [],
    ],
    [
      "cpu as -smp text: its count in <vcpu>, the text passed on",
      { cpu: "4,sockets=1,cores=2,threads=2" },
      ["<vcpu>4</vcpu>", '<qemu:arg value="-smp"/>', 'value="4,sockets=1,cores=2,threads=2"'],
      [],
    ],
    ["-m and -smp items", { arguments: [{ m: 512 }, { smp: 2 }] }, [
      '<memory unit="MiB">512</memory>',
      "<vcpu>2</vcpu>",
    ], ["<qemu:"]],
    ["machine as a map", { arguments: [{ machine: { type: "q35" } }] }, ['machine="q35"'], [
      "<qemu:",
    ]],
    [
      "kernel boot",
      {
        arguments: [{ kernel: "/k" }, { initrd: "/i" }, { append: "a=1 & b" }],
      },
      ["<kernel>/k</kernel>", "<initrd>/i</initrd>", "<cmdline>a=1 &amp; b</cmdline>"],
      [],
    ],
    ["no-acpi", { arguments: ["no-acpi"] }, [], ["<acpi/>"]],
    ["disks on each bus", {
      storage: [
        { name: "a", type: "qcow2", interface: "virtio", options: { cache: "none" } },
        { name: "b", type: "raw", interface: "sata", file: "/x/b.raw" },
        { name: "c", type: "raw", interface: "scsi" },
        { name: "d", type: "raw", interface: "ide" },
        { name: "e", type: "raw", interface: "virtio" },
      ],
    }, [
      '<driver name="qemu" type="qcow2" cache="none"/>',
      '<source file="/d/a.qcow2"/>',
      '<target dev="vda" bus="virtio"/>',
      '<source file="/x/b.raw"/>',
      '<target dev="sda" bus="sata"/>',
      '<target dev="sdb" bus="scsi"/>',
      '<controller type="scsi" index="0" model="virtio-scsi"/>',
      '<target dev="hda" bus="ide"/>',
      '<target dev="vdb" bus="virtio"/>',
      '<alias name="ua-a"/>',
    ], ["<qemu:", "<address"]],
    [
      "a backing file",
      {
        storage: [{
          name: "o",
          type: "qcow2",
          file: "/x/o.qcow2",
          backing_file: base,
          backing_format: "qcow2",
        }],
      },
      ['<backingStore type="file">', '<format type="qcow2"/>', `<source file="${base}"/>`],
      [],
    ],
    ["a disk libvirt cannot describe", {
      storage: [{ name: "n", type: "raw", interface: "none" }, {
        name: "t",
        type: "raw",
        options: { aio: "threads" },
      }],
    }, [
      '<qemu:arg value="file=/d/n.raw,format=raw,if=none,id=n"/>',
      '<qemu:arg value="file=/d/t.raw,format=raw,if=virtio,id=t,aio=threads"/>',
    ], ["<disk"]],
    ["shares", {
      storage: [
        { name: "p", type: "virtfs", path: "/s", mount_tag: "p", security_model: "passthrough" },
        { name: "m", type: "virtfs", path: "/s", mount_tag: "m", security_model: "mapped-xattr" },
        { name: "z", type: "virtfs", path: "/s", mount_tag: "z", security_model: "none" },
        {
          name: "f",
          type: "virtfs",
          path: "/s",
          mount_tag: "f",
          security_model: "mapped-file",
          readonly: true,
        },
      ],
    }, [
      'accessmode="passthrough"',
      'accessmode="mapped"',
      'accessmode="squash"',
      '<qemu:arg value="local,path=/s,mount_tag=f,security_model=mapped-file,id=f,readonly=on"/>',
    ], ['accessmode="mapped-file"']],
    ["own serial, network and vga", {
      vga: "virtio",
      display: "gtk",
      arguments: [{ serial: "mon:stdio" }, { netdev: "user,id=n0" }],
    }, [
      '<qemu:arg value="-vga"/>',
      '<qemu:arg value="gtk"/>',
      '<qemu:arg value="mon:stdio"/>',
    ], ["<serial", "<interface", "<video"]],
    ["passed-through devices push libvirt's PCI devices to slot 0x10 and up", {
      arguments: [{ device: "e1000" }],
      storage: [{ name: "a", type: "raw" }],
    }, [
      'bus="virtio"/>\n      <alias name="ua-a"/>\n      <address type="pci" domain="0x0000" bus="0x00" slot="0x10"',
      '<model type="e1000"/>\n      <address type="pci" domain="0x0000" bus="0x00" slot="0x11"',
      '<model type="vga"/>\n      <address type="pci" domain="0x0000" bus="0x00" slot="0x12"',
    ], []],
    ["the default NIC, VGA and serial", {}, [
      '<interface type="user">',
      '<model type="e1000"/>',
      '<model type="vga"/>',
      '<log file="/var/log/libvirt/qemu/vm1-serial0.log" append="on"/>',
      '<controller type="usb" model="none"/>',
      '<memballoon model="none"/>',
    ], ["<qemu:commandline", "<address"]],
    ["raw args in option groups", { args: ["-rtc", "base=utc", "-no-hpet", "-nographic"] }, [
      '<qemu:arg value="-rtc"/>',
      '<qemu:arg value="base=utc"/>',
      '<qemu:arg value="-no-hpet"/>',
    ], ['value="-nographic"']],
  ];
  try {
    for (const [what, raw, present, absent] of cases) {
      const { xml } = exported(raw);
      for (const part of present) assert.ok(xml.includes(part), `${what}: no ${part} in\n${xml}`);
      for (const part of absent) assert.ok(!xml.includes(part), `${what}: ${part} in\n${xml}`);
    }
  } finally {
    Deno.removeSync(base);
  }
});

Deno.test("domainXml lists every passed-through option once and every file the domain needs", () => {
  const made = exported({
    arguments: [{ kernel: "/k" }, "no-reboot", { netdev: { user: null, id: "n0" } }],
    storage: [{ name: "a", type: "raw" }, {
      name: "s",
      type: "virtfs",
      path: "/s",
      mount_tag: "s",
      security_model: "none",
    }],
    args: ["-rtc", "base=utc"],
  });
  assert.deepEqual(made.passedThrough, ["-no-reboot", "-netdev user,id=n0", "-rtc base=utc"]);
  assert.deepEqual(made.files, ["/k", "/d/a.raw", "/s"]);
});

Deno.test("domainToConfig reads a hand-written domain by its elements", () => {
  const cases: [string, string, Record<string, unknown>][] = [
    [
      "memory in KiB by default (in the largest unit that divides it), vcpu, kvm",
      "<domain type='kvm'><name>a</name><memory>1048576</memory><vcpu>2</vcpu></domain>",
      { memory: "1G", cpu: 2, arguments: [{ accel: "kvm" }, "no-acpi"], storage: [] },
    ],
    [
      "bytes, machine, kernel, on_reboot destroy",
      `<domain type='qemu'><name>b</name><memory unit='bytes'>536870912</memory>
        <os><type machine='q35'>hvm</type><kernel>/k</kernel><cmdline>x</cmdline></os>
        <features><acpi/></features><on_reboot>destroy</on_reboot></domain>`,
      {
        memory: "512M",
        arguments: [
          { accel: "tcg" },
          { machine: "q35" },
          { kernel: "/k" },
          { append: "x" },
          "no-reboot",
        ],
        storage: [],
      },
    ],
    [
      "commandline as items, display and vga as keys",
      `<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>c</name>
        <features><acpi/></features><qemu:commandline>
        <qemu:arg value='-display'/><qemu:arg value='gtk'/><qemu:arg value='-no-hpet'/>
        <qemu:arg value='-netdev'/><qemu:arg value='user,id=n0'/></qemu:commandline></domain>`,
      {
        display: "gtk",
        arguments: [{ accel: "tcg" }, "no-hpet", { netdev: "user,id=n0" }],
        storage: [],
      },
    ],
    [
      "a stray value keeps the command line raw",
      `<domain type='qemu' xmlns:q='http://libvirt.org/schemas/domain/qemu/1.0'><name>d</name>
        <features><acpi/></features>
        <q:commandline><q:arg value='x'/><q:arg value='-s'/></q:commandline></domain>`,
      { args: ["x", "-s"], arguments: [{ accel: "tcg" }], storage: [] },
    ],
    [
      "disks and shares",
      `<domain type='qemu'><name>e</name><features><acpi/></features><devices>
        <disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/>
          <source file='/x.qcow2'/><target dev='vda' bus='virtio'/><alias name='ua-root'/>
          <backingStore type='file'><format type='raw'/><source file='/b.raw'/></backingStore>
        </disk>
        <disk type='file'><driver type='raw'/><source file='/y.raw'/><target dev='sdc' bus='scsi'/>
          <readonly/></disk>
        <filesystem accessmode='mapped'><source dir='/s'/><target dir='tag'/><readonly/></filesystem>
      </devices></domain>`,
      {
        arguments: [{ accel: "tcg" }],
        storage: [
          {
            name: "root",
            type: "qcow2",
            file: "/x.qcow2",
            interface: "virtio",
            options: { cache: "none" },
            backing_file: "/b.raw",
            backing_format: "raw",
          },
          {
            name: "sdc",
            type: "raw",
            file: "/y.raw",
            interface: "scsi",
            options: { readonly: "on" },
          },
          {
            name: "fs2",
            type: "virtfs",
            path: "/s",
            mount_tag: "tag",
            security_model: "mapped-xattr",
            readonly: true,
          },
        ],
      },
    ],
  ];
  for (const [what, xml, config] of cases) {
    const read = domainToConfig(xml);
    assert.deepEqual(read.config, config, what);
    assert.equal(read.exact, false, what);
  }
});

Deno.test("domainToConfig refuses what is not a QEMU domain with a UsageError", () => {
  for (
    const xml of [
      "<network/>",
      "<domain type='xen'><name>x</name></domain>",
      "<domain type='qemu'/>",
      "<domain",
    ]
  ) {
    assert.throws(() => domainToConfig(xml), UsageError, xml);
  }
});

Deno.test("domainToConfig gives back qvm's own config only while the XML still says the same", () => {
  const raw = { memory: "1024M", arguments: [{ accel: "tcg" }, { machine: { type: "pc" } }] };
  const { xml } = exported(raw, "keep");
  const same = domainToConfig(xml);
  assert.equal(same.exact, true);
  assert.deepEqual(same.config.arguments, raw.arguments);
  assert.equal(same.config.memory, "1024M");

  const edited = domainToConfig(
    xml.replace('<memory unit="MiB">1024</memory>', '<memory unit="GiB">2</memory>'),
  );
  assert.equal(edited.exact, false);
  assert.equal(edited.config.memory, "2G");
  assert.deepEqual(edited.config.arguments, [{ accel: "tcg" }, { machine: "pc" }]);

  const tampered = domainToConfig(xml.replace(/"memory":"1024M"/, '"memory":"nonsense"'));
  assert.equal(tampered.exact, false);
});

Deno.test("domainToConfig knows its own export again after libvirt rewrote it (virsh dumpxml)", () => {
  const raw = { memory: "192M", arguments: [{ accel: "tcg" }, { machine: "q35" }, "no-reboot"] };
  const { xml } = exported(raw, "dumped");
  const rewritten = xml
    .replace('<memory unit="MiB">192</memory>', "<memory unit='KiB'>196608</memory>")
    .replace('<type arch="x86_64" machine="q35">', "<type arch='x86_64' machine='pc-q35-7.2'>")
    .replace("<devices>", "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>")
    .replace(
      "<vcpu>1</vcpu>",
      "<vcpu placement='static'>1</vcpu><currentMemory>196608</currentMemory>",
    );
  const read = domainToConfig(rewritten);
  assert.equal(read.exact, true);
  assert.deepEqual(read.config.arguments, raw.arguments);
  assert.equal(read.config.memory, "192M");

  const odd = domainToConfig(rewritten.replace("pc-q35-7.2", "pc-i440fx-7.2"));
  assert.equal(odd.exact, false, "another machine is a different domain");
  assert.deepEqual(odd.config.arguments, [
    { accel: "tcg" },
    { machine: "pc-i440fx-7.2" },
    "no-reboot",
  ]);
});

Deno.test("parseXml refuses elements nested past 256 levels with a syntax error, not a crash", () => {
  const deep = (n: number) => "<a>".repeat(n) + "</a>".repeat(n);
  assert.equal(parseXml(deep(256)).name, "a");
  assert.throws(() => parseXml(deep(257)), XmlSyntaxError);
  assert.throws(() => parseXml(deep(200_000)), XmlSyntaxError);
  assert.throws(
    () => domainToConfig(`<domain type="kvm"><name>d</name>${deep(200_000)}</domain>`),
    UsageError,
  );
});

Deno.test("domainXml passes -smp 0 and -m 0 through: <vcpu> and <memory> are never 0", () => {
  for (const item of [{ smp: 0 }, { m: 0 }, { m: "0G" }]) {
    const { xml, passedThrough } = exported({ arguments: [item] });
    assert.match(xml, /<vcpu>1<\/vcpu>/);
    assert.match(xml, /<memory unit="MiB">128<\/memory>/);
    assert.equal(passedThrough.length, 1, JSON.stringify(item));
  }
});

Deno.test("domainToConfig reads a CD-ROM back as media: cdrom; an empty or virtio one is listed", () => {
  const xml = `<domain type='kvm'><name>inst</name><memory unit='KiB'>1048576</memory>
    <features><acpi/></features><devices>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='/isos/debian.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <target dev='sdb' bus='sata'/><readonly/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='/isos/v.iso'/><target dev='vdb' bus='virtio'/><readonly/></disk>
    </devices></domain>`;
  const read = domainToConfig(xml);
  assert.deepEqual(read.config.storage, [
    { name: "sda", type: "raw", file: "/isos/debian.iso", interface: "sata", media: "cdrom" },
  ]);
  assert.equal(read.notImported.length, 2, read.notImported.join("\n"));
  assert.match(read.notImported.join("\n"), /sdb.*\n.*vdb: bus 'virtio' for a cdrom/);

  // qvm's own export read by its elements alone (no metadata): the same storage item.
  for (const bus of ["ide", "sata", "scsi"]) {
    const disk = { name: "cd", type: "raw", file: "/x.iso", interface: bus, media: "cdrom" };
    const { xml: out } = exported({ storage: [disk] });
    const plain = domainToConfig(out.replace(/<metadata>[\s\S]*<\/metadata>/, ""));
    assert.deepEqual(plain.config.storage, [disk], bus);
    assert.deepEqual(
      validateConfig(plain.config).storage,
      validateConfig({ storage: [disk] }).storage,
    );
  }
});

Deno.test("domainToConfig lists a <cpu> model and a <boot> device it does not carry", () => {
  const listed = (inner: string) =>
    domainToConfig(`<domain type='kvm'><name>c</name>${inner}</domain>`).notImported;
  assert.deepEqual(listed("<cpu mode='host-passthrough'/>"), ["<cpu> mode 'host-passthrough'"]);
  assert.deepEqual(listed("<cpu mode='custom'><model>Skylake-Server</model></cpu>"), [
    "<cpu> mode 'custom' model 'Skylake-Server'",
  ]);
  assert.equal(listed("<cpu><topology sockets='2' cores='1' threads='1'/></cpu>").length, 1);
  assert.deepEqual(listed("<os><type>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>"), [
    "<os><boot dev='cdrom'>",
  ]);
  // What libvirt writes for a domain that said neither is QEMU's default: nothing to list.
  assert.deepEqual(
    listed(
      "<os><type>hvm</type><boot dev='hd'/></os><cpu mode='custom' match='exact' check='none'>" +
        "<model fallback='forbid'>qemu64</model></cpu>",
    ),
    [],
  );
  // A running domain's dumpxml: the same CPU with the features QEMU's model has here.
  assert.deepEqual(
    listed(
      "<cpu mode='custom' match='exact' check='full'><model fallback='forbid'>qemu64</model>" +
        "<feature policy='require' name='hypervisor'/></cpu>",
    ),
    [],
  );
});

Deno.test("domainToConfig lists disk driver options, disk parts and a <vcpu current> it does not carry", () => {
  const read = domainToConfig(`<domain type='kvm'><name>d</name><vcpu current='1'>4</vcpu>
    <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/a.qcow2'/><target dev='vda' bus='virtio'/><boot order='1'/>
      <serial>S1</serial><address type='pci' domain='0x0000' bus='0x00' slot='0x05'/></disk>
    </devices></domain>`);
  assert.equal(read.config.cpu, 4);
  assert.deepEqual(read.notImported, [
    "<vcpu current='1'>",
    "disk vda: driver discard='unmap'",
    "disk vda: <boot>",
    "disk vda: <serial>",
  ]);
  assert.deepEqual(read.config.storage, [
    { name: "vda", type: "qcow2", file: "/a.qcow2", interface: "virtio" },
  ]);
});

Deno.test("exposureOf lists host paths with their access, listeners beyond this host, commands and foreign keys", () => {
  // A backing file must exist when a config is validated.
  const base = Deno.makeTempFileSync({ suffix: ".raw" });
  try {
    exposureCase(base);
  } finally {
    Deno.removeSync(base);
  }
});

/** The checks of the test above, with `base` as disk d's backing file. */
function exposureCase(base: string): void {
  const own = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJvYF6WH0vtFLZBV9mwwZ7b8I9cY1eTRyT8Hf0Pqsh0x me";
  const config = validateConfig({
    binary: "/opt/qemu/bin/qemu-system-x86_64",
    arguments: [
      { kernel: "/boot/vmlinuz" },
      { drive: "file=/srv/a.img,format=raw,if=virtio" },
      { drive: "file=/srv/b.img,format=raw,if=virtio,readonly=on" },
      { cdrom: "/srv/c.iso" },
      { serial: "file:/var/log/s.log" },
      { monitor: "tcp:0.0.0.0:4444,server=on,wait=off" },
      { qmp: "tcp:127.0.0.1:4445,server=on,wait=off" },
      { vnc: ":1" },
      { netdev: "user,id=n0,hostfwd=tcp::2222-:22,hostfwd=tcp:127.0.0.1:2223-:23" },
      { chardev: "socket,id=c0,host=0.0.0.0,port=5555,server=on" },
      { object: "memory-backend-file,id=m0,size=64M,mem-path=/dev/shm/m0,share=on" },
      "s",
    ],
    args: [
      "-virtfs",
      "local,path=/srv/share,mount_tag=t,security_model=none",
      "-D",
      "/run/x.log",
    ],
    storage: [
      {
        name: "d",
        type: "qcow2",
        file: "/srv/d.qcow2",
        backing_file: base,
        backing_format: "raw",
      },
      {
        name: "r",
        type: "virtfs",
        path: "/srv/ro",
        mount_tag: "r",
        security_model: "none",
        readonly: true,
      },
    ],
  });
  const exposure = exposureOf(
    { ...config, cloud_init: { runcmd: ["echo hi", ["touch", "/x"]], ssh_authorized_keys: [own] } },
    { ownKeys: [own] },
  );
  const paths = Object.fromEntries(exposure.paths.map((p) => [p.path, `${p.by}:${p.writable}`]));
  assert.deepEqual(paths, {
    "/opt/qemu/bin/qemu-system-x86_64": "emulator:false",
    "/boot/vmlinuz": "-kernel:false",
    "/srv/a.img": "-drive:true",
    "/srv/b.img": "-drive:false",
    "/srv/c.iso": "-cdrom:false",
    "/var/log/s.log": "-serial:true",
    "/dev/shm/m0": "-object:true",
    "/srv/share": "-virtfs:true",
    "/run/x.log": "-D:true",
    "/srv/d.qcow2": "disk d:true",
    [base]: "backing file of disk d:false",
    "/srv/ro": "share r:false",
  });
  assert.deepEqual(exposure.ports.sort(), [
    "0.0.0.0:1234 (-s, the gdb server)",
    "0.0.0.0:2222 -> guest 22/tcp",
    "0.0.0.0:4444 (-monitor)",
    "0.0.0.0:5555 (-chardev)",
    "0.0.0.0:5901 (-vnc)",
  ]);
  assert.deepEqual(exposure.commands, ['"echo hi"', '"touch /x"']);
  assert.deepEqual(exposure.foreignKeys, []);
  assert.deepEqual(
    exposureOf({ ...config, cloud_init: { ssh_authorized_keys: [own] } }, { ownKeys: [] })
      .foreignKeys,
    [own],
  );
  // Only what the guest could write, and only in a system folder, is refused.
  refuseSystemWrites(exposure);
  for (const path of ["/etc/shadow", "/usr/lib/x.so", "/boot/grub/grub.cfg"]) {
    const writable = exposureOf(
      validateConfig({ arguments: [{ drive: `file=${path},if=virtio` }] }),
      {
        ownKeys: [],
      },
    );
    assert.throws(() => refuseSystemWrites(writable), UsageError, path);
  }
}
