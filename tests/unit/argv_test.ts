import assert from "node:assert/strict";
import {
  argumentId,
  type ArgumentItem,
  argumentOption,
  diskFile,
  type DiskStorage,
  escapeOptionValue,
  type StorageItem,
  validateConfig,
  type VmConfig,
} from "../../src/config/mod.ts";
import { argumentArgv, configArgv } from "../../src/qemu/argv.ts";

function config(partial: Partial<VmConfig>): VmConfig {
  return { arguments: [], args: [], storage: [], ...partial };
}

function disk(partial: Partial<DiskStorage> & { name: string }): DiskStorage {
  return { type: "qcow2", size: "10G", interface: "virtio", ...partial };
}

const argumentRows: [string, ArgumentItem, string[]][] = [
  ["a string item is a flag", "nographic", ["-nographic"]],
  ["a flag written with a dash gets no second dash", "-enable-kvm", ["-enable-kvm"]],
  ["a key with null is a flag", { "no-reboot": null }, ["-no-reboot"]],
  ["a key with a string is an option with a value", { machine: "q35" }, ["-machine", "q35"]],
  ["a number value is written as text", { smp: 4 }, ["-smp", "4"]],
  ["true is written on", { "enable-sync-profile": true }, ["-enable-sync-profile", "on"]],
  ["false is written off", { "win2k-hack": false }, ["-win2k-hack", "off"]],
  ["a list value is joined with commas", { boot: ["c", "d"] }, ["-boot", "c,d"]],
  [
    "a map value becomes k=v sub-options",
    { object: { a: 1, b: 2 } },
    ["-object", "a=1,b=2"],
  ],
  [
    "deeper maps use dotted keys",
    { blockdev: { driver: "qcow2", file: { driver: "file", filename: "/d.img" } } },
    ["-blockdev", "driver=qcow2,file.driver=file,file.filename=/d.img"],
  ],
  [
    "a list inside a map repeats its key, the form QEMU reads as a list",
    { object: { id: "x", list: ["a", "b"] } },
    ["-object", "id=x,list=a,list=b"],
  ],
  [
    "an empty map under a key is the bare key",
    { display: { gtk: {} } },
    ["-display", "gtk"],
  ],
  [
    "a list of maps under a key gives dotted keys",
    { k: "v", a: [{ b: 1 }, { c: 2 }] },
    ["-k", "v,a.b=1,a.c=2"],
  ],
  [
    "a list inside a list is flattened",
    { boot: [["c", "d"], "n"] },
    ["-boot", "c,d,n"],
  ],
  [
    "further keys of a map are sub-options of the first",
    { display: "gtk", "zoom-to-fit": "on" },
    ["-display", "gtk,zoom-to-fit=on"],
  ],
  [
    "booleans in sub-options are on/off",
    { display: "gtk", gl: true, "show-cursor": false },
    ["-display", "gtk,gl=on,show-cursor=off"],
  ],
  ["a sub-option with null is written bare", { display: "sdl", gl: null }, ["-display", "sdl,gl"]],
  [
    "a null first value leaves only the sub-options",
    { "rtc": null, base: "utc", clock: "host" },
    ["-rtc", "base=utc,clock=host"],
  ],
  [
    "a comma inside a sub-option value is escaped as ,,",
    { drive: { file: "/vm/a,b.img", format: "raw" } },
    ["-drive", "file=/vm/a,,b.img,format=raw"],
  ],
  [
    "a comma in a further key's value is escaped too",
    { netdev: "user", id: "n0", hostfwd: "tcp::22-:22,x" },
    ["-netdev", "user,id=n0,hostfwd=tcp::22-:22,,x"],
  ],
  [
    "the first value is raw option text and is not escaped",
    { netdev: "user,id=n0" },
    ["-netdev", "user,id=n0"],
  ],
  ["an empty string value is kept as an empty argument", { append: "" }, ["-append", ""]],
  [
    "a map inside a list becomes k=v parts",
    { device: ["virtio-net-pci", { netdev: "n0", mac: "52:54:00:12:34:56" }] },
    ["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"],
  ],
];

for (const [rule, item, expected] of argumentRows) {
  Deno.test(`argumentArgv: ${rule}`, () => {
    assert.deepEqual(argumentArgv(item), expected);
  });
}

const optionRows: [ArgumentItem, string][] = [
  ["nographic", "nographic"],
  ["-nographic", "nographic"],
  ["--nographic", "nographic"],
  [{ display: "gtk", "zoom-to-fit": "on" }, "display"],
  [{ "-m": "1G" }, "m"],
  [{ "no-reboot": null }, "no-reboot"],
];

Deno.test("argumentOption is the flag or the first key, without leading dashes", () => {
  for (const [item, option] of optionRows) assert.equal(argumentOption(item), option);
});

const idRows: [string, ArgumentItem, string | undefined][] = [
  ["a sibling id key", { netdev: "user", id: "n0" }, "n0"],
  ["an id inside the value map", { device: { driver: "e1000", id: "nic0" } }, "nic0"],
  ["an id=... part of a raw string", { netdev: "user,id=n1,hostfwd=tcp::1-:1" }, "n1"],
  ["an id=... element of a list", { device: ["e1000", "id=nic1"] }, "nic1"],
  ["no id at all", { device: "e1000" }, undefined],
  ["a flag", "nographic", undefined],
];

for (const [where, item, id] of idRows) {
  Deno.test(`argumentId finds ${where}`, () => {
    assert.equal(argumentId(item), id);
  });
}

Deno.test("diskFile defaults to <diskDir>/<name>.<type> and keeps an explicit file", () => {
  assert.equal(diskFile(disk({ name: "hdd" }), "/data/disks"), "/data/disks/hdd.qcow2");
  assert.equal(diskFile(disk({ name: "r", type: "raw" }), "/data/disks/"), "/data/disks/r.raw");
  assert.equal(diskFile(disk({ name: "hdd", file: "/vm/x.img" }), "/data/disks"), "/vm/x.img");
});

const configRows: [string, Partial<VmConfig>, string[]][] = [
  ["an empty config has no options", {}, []],
  ["memory becomes -m", { memory: "2G" }, ["-m", "2G"]],
  ["cpu becomes -smp", { cpu: 4 }, ["-smp", "4"]],
  ["display becomes -display", { display: "none" }, ["-display", "none"]],
  ["vga becomes -vga", { vga: "virtio" }, ["-vga", "virtio"]],
  [
    "arguments become options in order",
    { arguments: ["no-reboot", { machine: "q35" }] },
    ["-no-reboot", "-machine", "q35"],
  ],
  [
    "nographic is left out (qvm runs the VM headless with its serial on qvm console)",
    { arguments: ["nographic", { "-nographic": null }], args: ["-nographic", "-S"] },
    ["-S"],
  ],
  ["args are appended raw", { args: ["-S", "-boot", "menu=on"] }, ["-S", "-boot", "menu=on"]],
  [
    "a virtio disk without file lives in the disk dir",
    { storage: [disk({ name: "hdd" })] },
    ["-drive", "file=/d/hdd.qcow2,format=qcow2,if=virtio,id=hdd"],
  ],
  [
    "a raw disk uses format=raw and a .raw default file",
    { storage: [disk({ name: "r", type: "raw" })] },
    ["-drive", "file=/d/r.raw,format=raw,if=virtio,id=r"],
  ],
  [
    "a disk file containing a comma is escaped",
    { storage: [disk({ name: "hdd", file: "/vm/a,b.qcow2" })] },
    ["-drive", "file=/vm/a,,b.qcow2,format=qcow2,if=virtio,id=hdd"],
  ],
  [
    "an ide disk uses if=ide",
    { storage: [disk({ name: "old", interface: "ide" })] },
    ["-drive", "file=/d/old.qcow2,format=qcow2,if=ide,id=old"],
  ],
  [
    "a none disk uses if=none and no device",
    { storage: [disk({ name: "spare", interface: "none" })] },
    ["-drive", "file=/d/spare.qcow2,format=qcow2,if=none,id=spare"],
  ],
  [
    "sata disks share one ahci controller, one port each",
    { storage: [disk({ name: "a", interface: "sata" }), disk({ name: "b", interface: "sata" })] },
    [
      "-drive",
      "file=/d/a.qcow2,format=qcow2,if=none,id=a",
      "-device",
      "ahci,id=ahci0",
      "-device",
      "ide-hd,drive=a,bus=ahci0.0",
      "-drive",
      "file=/d/b.qcow2,format=qcow2,if=none,id=b",
      "-device",
      "ide-hd,drive=b,bus=ahci0.1",
    ],
  ],
  [
    "scsi disks share one virtio-scsi controller",
    { storage: [disk({ name: "a", interface: "scsi" }), disk({ name: "b", interface: "scsi" })] },
    [
      "-drive",
      "file=/d/a.qcow2,format=qcow2,if=none,id=a",
      "-device",
      "virtio-scsi-pci,id=scsi0",
      "-device",
      "scsi-hd,drive=a,bus=scsi0.0",
      "-drive",
      "file=/d/b.qcow2,format=qcow2,if=none,id=b",
      "-device",
      "scsi-hd,drive=b,bus=scsi0.0",
    ],
  ],
  [
    "a virtfs share becomes -virtfs local",
    {
      storage: [{
        name: "share",
        type: "virtfs",
        path: "/srv/a,b",
        mount_tag: "host",
        security_model: "mapped-xattr",
        readonly: false,
      }],
    },
    ["-virtfs", "local,path=/srv/a,,b,mount_tag=host,security_model=mapped-xattr,id=share"],
  ],
  [
    "a read-only virtfs share adds readonly=on",
    {
      storage: [{
        name: "ro",
        type: "virtfs",
        path: "/srv",
        mount_tag: "ro",
        security_model: "none",
        readonly: true,
      }],
    },
    ["-virtfs", "local,path=/srv,mount_tag=ro,security_model=none,id=ro,readonly=on"],
  ],
];

for (const [rule, partial, expected] of configRows) {
  Deno.test(`configArgv: ${rule}`, () => {
    assert.deepEqual(configArgv(config(partial), { diskDir: "/d" }), expected);
  });
}

Deno.test("configArgv writes options in the order of the config's keys, as maqet does", () => {
  const hdd = disk({ name: "hdd" });
  const keys = {
    args: ["-S"],
    storage: [hdd],
    arguments: ["no-reboot"],
    vga: "std",
    display: "none",
    cpu: 2,
    memory: "1G",
  };
  const options = {
    args: ["-S"],
    storage: ["-drive", "file=/d/hdd.qcow2,format=qcow2,if=virtio,id=hdd"],
    arguments: ["-no-reboot"],
    vga: ["-vga", "std"],
    display: ["-display", "none"],
    cpu: ["-smp", "2"],
    memory: ["-m", "1G"],
  };
  for (const order of [Object.keys(keys), Object.keys(keys).reverse()]) {
    const config = Object.fromEntries(
      order.map((key) => [key, keys[key as keyof typeof keys]]),
    ) as unknown as VmConfig;
    assert.deepEqual(
      configArgv(config, { diskDir: "/d" }),
      order.flatMap((key) => options[key as keyof typeof options]),
    );
  }
});

Deno.test("configArgv leaves out the binary and the options qvm manages", () => {
  const argv = configArgv(config({ binary: "/usr/bin/qemu-system-x86_64", name: "vm1" }), {
    diskDir: "/d",
  });
  assert.deepEqual(argv, []);
});

Deno.test("configArgv does not change the config", () => {
  const storage: StorageItem[] = [disk({ name: "hdd", interface: "sata" })];
  const input = config({ memory: "1G", storage });
  const before = structuredClone(input);
  configArgv(input, { diskDir: "/d" });
  assert.deepEqual(input, before);
});

Deno.test("a maqet-style config builds the expected QEMU options", () => {
  const validated = validateConfig({
    binary: "/usr/bin/qemu-system-x86_64",
    memory: "4G",
    cpu: 2,
    arguments: [
      { display: "gtk", "zoom-to-fit": "on" },
      { vga: "std" },
      { device: { driver: "virtio-net-pci", netdev: "n0" } },
      { netdev: "user", id: "n0", hostfwd: "tcp::2222-:22" },
      "enable-kvm",
    ],
    storage: [{ name: "hdd", size: "20G", type: "qcow2", interface: "virtio" }],
  });
  assert.deepEqual(configArgv(validated, { diskDir: "/var/lib/qvm/disks" }), [
    "-m",
    "4G",
    "-smp",
    "2",
    "-display",
    "gtk,zoom-to-fit=on",
    "-vga",
    "std",
    "-device",
    "driver=virtio-net-pci,netdev=n0",
    "-netdev",
    "user,id=n0,hostfwd=tcp::2222-:22",
    "-enable-kvm",
    "-drive",
    "file=/var/lib/qvm/disks/hdd.qcow2,format=qcow2,if=virtio,id=hdd",
  ]);
});

Deno.test("escapeOptionValue doubles commas and leaves everything else", () => {
  assert.equal(escapeOptionValue("/vm/a,b,,c.img"), "/vm/a,,b,,,,c.img");
  assert.equal(escapeOptionValue("plain=text"), "plain=text");
});

async function sourcesUnder(folder: string): Promise<{ path: string; text: string }[]> {
  const root = new URL(`../../${folder}/`, import.meta.url);
  const out: { path: string; text: string }[] = [];
  for await (const entry of Deno.readDir(root)) {
    const url = new URL(entry.name, root);
    if (entry.isDirectory) out.push(...await sourcesUnder(`${folder}/${entry.name}`));
    else if (entry.name.endsWith(".ts")) {
      out.push({ path: `${folder}/${entry.name}`, text: await Deno.readTextFile(url) });
    }
  }
  return out;
}

Deno.test("QEMU option values are escaped in one place (config/qemu_opts.ts), argv built in one (qemu/argv.ts)", async () => {
  for (const { path, text } of await sourcesUnder("src")) {
    if (path !== "src/config/qemu_opts.ts") {
      assert.doesNotMatch(text, /replaceAll\(\s*",",\s*",,"\s*\)/, path);
      assert.doesNotMatch(text, /function\s+escape\w*Value\b/, path);
    }
    if (path !== "src/qemu/argv.ts") {
      assert.doesNotMatch(text, /function\s+(configArgv|storageArgv|virtfsArgv)\b/, path);
    }
  }
});

Deno.test("modules outside src/config reach the config module only through config/mod.ts", async () => {
  const sources = [...await sourcesUnder("src"), ...await sourcesUnder("bench")];
  for (const { path, text } of sources) {
    if (path.startsWith("src/config/")) continue;
    for (const match of text.matchAll(/from\s+["']([^"']*\/config\/[^"']+)["']/g)) {
      assert.match(match[1], /\/config\/mod\.ts$/, `${path} imports ${match[1]}`);
    }
  }
});
