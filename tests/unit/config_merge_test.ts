import assert from "node:assert/strict";
import { mergeConfigs, mergeFlags } from "../../src/config/mod.ts";

type Raw = Record<string, unknown>;

const rows: [string, Raw, Raw, Raw][] = [
  // Generic rules.
  ["scalars replace", { memory: "1G", cpu: 1 }, { memory: "2G" }, { memory: "2G", cpu: 1 }],
  [
    "maps deep-merge",
    { extra: { a: 1, inner: { x: 1 } } },
    { extra: { b: 2, inner: { y: 2 } } },
    { extra: { a: 1, b: 2, inner: { x: 1, y: 2 } } },
  ],
  ["other lists concatenate", { args: ["-S"] }, { args: ["-boot", "c"] }, {
    args: ["-S", "-boot", "c"],
  }],
  ["a key only in the base is kept", { vga: "std" }, {}, { vga: "std" }],
  ["undefined in the override means not given", { cpu: 2 }, { cpu: undefined }, { cpu: 2 }],
  ["null in the override replaces (unsets) a value", { vga: "std" }, { vga: null }, { vga: null }],
  ["a list replaces a scalar", { args: "-S" }, { args: ["-S"] }, { args: ["-S"] }],

  // arguments: merge by option key.
  [
    "a singleton argument replaces the earlier one in place",
    { arguments: [{ machine: "pc" }, "nographic"] },
    { arguments: [{ machine: "q35", accel: "tcg" }] },
    { arguments: [{ machine: "q35", accel: "tcg" }, "nographic"] },
  ],
  [
    "every singleton option replaces: display vga m smp machine cpu kernel initrd append",
    {
      arguments: ["display", "vga", "m", "smp", "machine", "cpu", "kernel", "initrd", "append"]
        .map((k) => ({ [k]: "old" })),
    },
    {
      arguments: ["display", "vga", "m", "smp", "machine", "cpu", "kernel", "initrd", "append"]
        .map((k) => ({ [k]: "new" })),
    },
    {
      arguments: ["display", "vga", "m", "smp", "machine", "cpu", "kernel", "initrd", "append"]
        .map((k) => ({ [k]: "new" })),
    },
  ],
  [
    "a non-singleton argument without id is appended",
    { arguments: [{ device: "e1000" }] },
    { arguments: [{ device: "virtio-rng-pci" }] },
    { arguments: [{ device: "e1000" }, { device: "virtio-rng-pci" }] },
  ],
  [
    "an argument with the same key and the same id replaces the earlier one",
    { arguments: [{ netdev: "user", id: "n0" }, { device: "e1000" }] },
    { arguments: [{ netdev: "tap", id: "n0", ifname: "tap0" }] },
    { arguments: [{ netdev: "tap", id: "n0", ifname: "tap0" }, { device: "e1000" }] },
  ],
  [
    "the id may be written in the value map or in a raw string",
    { arguments: [{ device: { driver: "e1000", id: "nic" } }] },
    { arguments: [{ device: "virtio-net-pci,id=nic" }] },
    { arguments: [{ device: "virtio-net-pci,id=nic" }] },
  ],
  [
    "the same key with a different id is appended",
    { arguments: [{ netdev: "user", id: "n0" }] },
    { arguments: [{ netdev: "user", id: "n1" }] },
    { arguments: [{ netdev: "user", id: "n0" }, { netdev: "user", id: "n1" }] },
  ],
  [
    "the same id under a different key is appended",
    { arguments: [{ netdev: "user", id: "x" }] },
    { arguments: [{ device: "e1000", id: "x" }] },
    { arguments: [{ netdev: "user", id: "x" }, { device: "e1000", id: "x" }] },
  ],
  [
    "string flags are appended",
    { arguments: ["nographic"] },
    { arguments: ["no-reboot"] },
    { arguments: ["nographic", "no-reboot"] },
  ],
  [
    "a flag with dashes matches the same singleton without",
    { arguments: [{ "-machine": "pc" }] },
    { arguments: [{ machine: "q35" }] },
    { arguments: [{ machine: "q35" }] },
  ],

  // A top-level shorthand and its argument are one setting.
  [
    "a later memory removes an earlier {m: ...} argument",
    { arguments: [{ m: "1G" }, "nographic"] },
    { memory: "4G" },
    { arguments: ["nographic"], memory: "4G" },
  ],
  [
    "a later {m: ...} argument removes an earlier memory",
    { memory: "1G", arguments: [] },
    { arguments: [{ m: "4G" }] },
    { arguments: [{ m: "4G" }] },
  ],
  [
    "a later cpu removes an earlier {smp: ...} argument",
    { arguments: [{ smp: 4 }] },
    { cpu: 2 },
    { arguments: [], cpu: 2 },
  ],
  [
    "a later {smp: ...} argument removes an earlier cpu",
    { cpu: 2, arguments: [] },
    { arguments: [{ smp: { cpus: 4, sockets: 1 } }] },
    { arguments: [{ smp: { cpus: 4, sockets: 1 } }] },
  ],
  [
    "a later display removes an earlier display argument",
    { arguments: [{ display: "gtk", "zoom-to-fit": "on" }] },
    { display: "none" },
    { arguments: [], display: "none" },
  ],
  [
    "a later vga argument removes an earlier vga",
    { vga: "std", arguments: [] },
    { arguments: [{ vga: "virtio" }] },
    { arguments: [{ vga: "virtio" }] },
  ],
  [
    "a cpu model argument does not touch the cpu count",
    { cpu: 2, arguments: [] },
    { arguments: [{ cpu: "host" }] },
    { cpu: 2, arguments: [{ cpu: "host" }] },
  ],

  // storage: merge by name.
  [
    "storage items with the same name deep-merge",
    { storage: [{ name: "hdd", size: "10G", interface: "virtio" }] },
    { storage: [{ name: "hdd", size: "20G" }] },
    { storage: [{ name: "hdd", size: "20G", interface: "virtio" }] },
  ],
  [
    "a storage item with a new name is appended",
    { storage: [{ name: "hdd" }] },
    { storage: [{ name: "data", type: "raw" }] },
    { storage: [{ name: "hdd" }, { name: "data", type: "raw" }] },
  ],
  [
    "unnamed storage items are never merged: each is another disk",
    { storage: [{ size: "10G" }, { size: "5G" }] },
    { storage: [{ interface: "sata" }, { size: "8G" }] },
    {
      storage: [{ size: "10G" }, { size: "5G" }, { interface: "sata" }, { size: "8G" }],
    },
  ],
  [
    "an unnamed override item is appended even when a base item is named storage0",
    { storage: [{ name: "storage0", size: "10G" }] },
    { storage: [{ size: "30G" }] },
    { storage: [{ name: "storage0", size: "10G" }, { size: "30G" }] },
  ],
  [
    "a null name counts as unnamed",
    { storage: [{ name: null, size: "1G" }] },
    { storage: [{ name: null, size: "2G" }] },
    { storage: [{ name: null, size: "1G" }, { name: null, size: "2G" }] },
  ],
  [
    "a type written in capitals still counts as virtfs when merging",
    { storage: [{ name: "s", type: "VIRTFS", path: "/srv" }] },
    { storage: [{ name: "s", readonly: true }] },
    { storage: [{ name: "s", type: "VIRTFS", path: "/srv", readonly: true }] },
  ],
  [
    "changing the kind of a storage item (disk to virtfs) replaces it",
    { storage: [{ name: "s", size: "10G", interface: "sata" }] },
    { storage: [{ name: "s", type: "virtfs", path: "/srv", mount_tag: "s" }] },
    { storage: [{ name: "s", type: "virtfs", path: "/srv", mount_tag: "s" }] },
  ],
  [
    "changing qcow2 to raw still merges",
    { storage: [{ name: "s", size: "10G", type: "qcow2" }] },
    { storage: [{ name: "s", type: "raw" }] },
    { storage: [{ name: "s", size: "10G", type: "raw" }] },
  ],
  [
    "storage given only by the override is taken as it is",
    {},
    { storage: [{ size: "1G" }] },
    { storage: [{ size: "1G" }] },
  ],
];

for (const [rule, base, over, expected] of rows) {
  Deno.test(`mergeConfigs: ${rule}`, () => {
    assert.deepEqual(mergeConfigs(base, over), expected);
  });
}

Deno.test("mergeConfigs never changes its inputs", () => {
  const base = { memory: "1G", arguments: [{ m: "1G" }], storage: [{ size: "1G" }], x: { a: [1] } };
  const over = { memory: "2G", storage: [{ name: "storage0", size: "2G" }], x: { a: [2] } };
  const baseCopy = structuredClone(base);
  const overCopy = structuredClone(over);
  const merged = mergeConfigs(base, over);
  assert.deepEqual(base, baseCopy);
  assert.deepEqual(over, overCopy);
  (merged.x as { a: number[] }).a.push(3);
  assert.deepEqual(base.x.a, [1]);
});

Deno.test("mergeConfigs keeps a __proto__ key as data, never as a prototype", () => {
  const over = JSON.parse('{"extra": {"__proto__": {"polluted": true}}}');
  const merged = mergeConfigs({ extra: {} }, over);
  const extra = merged.extra as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(extra), Object.prototype);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.deepEqual(Object.keys(extra), ["__proto__"]);
});

Deno.test("merging three configs left to right lets the last one win", () => {
  const a = { memory: "1G", arguments: [{ machine: "pc" }], args: ["-a"] };
  const b = { memory: "2G", args: ["-b"] };
  const c = { arguments: [{ machine: "q35" }], args: ["-c"] };
  assert.deepEqual(mergeConfigs(mergeConfigs(a, b), c), {
    memory: "2G",
    arguments: [{ machine: "q35" }],
    args: ["-a", "-b", "-c"],
  });
});

Deno.test("flags change a setting: a forward replaces those to its guest port, accel replaces accel and enable-kvm", () => {
  const base = {
    network: { ports: ["auto:22", "8080:80", "5353:53/udp", "not a spec"] },
    arguments: [{ accel: "kvm" }, "enable-kvm", { machine: "q35" }],
    cloud_init: { user: "dev", ssh_authorized_keys: ["/a.pub"] },
  };
  assert.deepEqual(
    mergeFlags(base, {
      network: { ports: ["2222:22", "53:53"] },
      arguments: [{ accel: "tcg" }],
      cloud_init: { ssh_authorized_keys: ["/b.pub"] },
    }),
    {
      // 53/udp is another protocol; a malformed item is left for validation to name.
      network: { ports: ["8080:80", "5353:53/udp", "not a spec", "2222:22", "53:53"] },
      arguments: [{ machine: "q35" }, { accel: "tcg" }],
      cloud_init: { user: "dev", ssh_authorized_keys: ["/a.pub", "/b.pub"] },
    },
  );
  // Without those flags, it merges as mergeConfigs does.
  assert.deepEqual(mergeFlags(base, { memory: "1G" }), mergeConfigs(base, { memory: "1G" }));
});
