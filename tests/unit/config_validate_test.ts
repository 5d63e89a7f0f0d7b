import assert from "node:assert/strict";
import { UsageError } from "../../src/errors.ts";
import { diskSizeOf, validateConfig, validateName } from "../../src/config/mod.ts";

type Raw = Record<string, unknown>;

function errorOf(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof UsageError, `expected a UsageError, got ${error}`);
    return error;
  }
  assert.fail("expected an error");
}

Deno.test("an empty config validates to empty lists and no optional keys", () => {
  assert.deepEqual(validateConfig({}), { arguments: [], args: [], storage: [] });
});

Deno.test("null values mean not set", () => {
  const raw = { name: null, memory: null, cpu: null, arguments: null, args: null, storage: null };
  assert.deepEqual(validateConfig(raw), { arguments: [], args: [], storage: [] });
});

const memoryRows: [unknown, string][] = [
  ["512M", "512M"],
  ["1G", "1G"],
  ["1g", "1G"],
  ["4096k", "4096K"],
  ["1T", "1T"],
  [2048, "2048M"],
  ["2048", "2048M"],
  ["0512M", "512M"],
];

for (const [memory, normalized] of memoryRows) {
  Deno.test(`memory ${JSON.stringify(memory)} is accepted as ${normalized}`, () => {
    assert.equal(validateConfig({ memory }).memory, normalized);
  });
}

Deno.test("cpu accepts 1..1024 as a number or a numeric string", () => {
  assert.equal(validateConfig({ cpu: 1 }).cpu, 1);
  assert.equal(validateConfig({ cpu: 1024 }).cpu, 1024);
  assert.equal(validateConfig({ cpu: "8" }).cpu, 8);
});

const CPU_HINT = "use a whole number from 1 to 1024, or -smp text such as " +
  "'4,sockets=1,cores=2,threads=2'";

Deno.test("cpu accepts -smp text, as maqet passes it on; other text is refused", () => {
  for (const text of ["4,sockets=1,cores=2,threads=2", "sockets=2,cores=2", "8,maxcpus=16"]) {
    assert.equal(validateConfig({ cpu: text }).cpu, text);
  }
  for (const text of ["4,sockts=1", "4,cores=two", "4,,cores=2", "4;cores=2", "cores"]) {
    assert.equal(
      errorOf(() => validateConfig({ cpu: text })).message,
      `invalid cpu '${text}': ${CPU_HINT}`,
    );
  }
});

Deno.test("name, binary, display and vga are kept as given", () => {
  assert.deepEqual(
    validateConfig({
      name: "web-1.a_b",
      binary: "qemu-system-aarch64",
      display: "none",
      vga: "std",
    }),
    {
      name: "web-1.a_b",
      binary: "qemu-system-aarch64",
      display: "none",
      vga: "std",
      arguments: [],
      args: [],
      storage: [],
    },
  );
});

Deno.test("a numeric name is read as text", () => {
  assert.equal(validateConfig({ name: 2024 }).name, "2024");
});

Deno.test("args numbers are converted to strings", () => {
  assert.deepEqual(validateConfig({ args: ["-smp", 2, "-S"] }).args, ["-smp", "2", "-S"]);
});

Deno.test("arguments keep strings and maps as given", () => {
  const items = ["nographic", { display: "gtk", "zoom-to-fit": "on" }, { rtc: null, base: "utc" }];
  assert.deepEqual(validateConfig({ arguments: items }).arguments, items);
});

Deno.test("a disk gets defaults: storage<i>, qcow2, 10G, virtio, no file", () => {
  assert.deepEqual(
    validateConfig({ storage: [{}, { name: "data", size: "5g", type: "raw" }] }).storage,
    [
      { name: "storage0", type: "qcow2", size: "10G", interface: "virtio" },
      { name: "data", type: "raw", size: "5G", interface: "virtio" },
    ],
  );
});

Deno.test("an overlay of a backing file without a size takes the backing file's size", () => {
  const base = Deno.makeTempFileSync({ suffix: ".qcow2" });
  try {
    const storage = [{
      name: "hdd",
      file: "/vm/hdd.qcow2",
      backing_file: base,
      backing_format: "qcow2",
      interface: "sata",
    }];
    assert.deepEqual(validateConfig({ storage }).storage, [{
      name: "hdd",
      type: "qcow2",
      file: "/vm/hdd.qcow2",
      interface: "sata",
      backing_file: base,
      backing_format: "qcow2",
    }]);
  } finally {
    Deno.removeSync(base);
  }
});

Deno.test("every disk interface is accepted", () => {
  for (const iface of ["virtio", "sata", "ide", "scsi", "none"]) {
    const [disk] = validateConfig({ storage: [{ interface: iface }] }).storage;
    assert.equal(disk.type !== "virtfs" && disk.interface, iface);
  }
});

Deno.test("a virtfs share gets defaults: mapped-xattr, not read-only", () => {
  const storage = [{ name: "share", type: "virtfs", path: "/srv", mount_tag: "host" }];
  assert.deepEqual(validateConfig({ storage }).storage, [{
    name: "share",
    type: "virtfs",
    path: "/srv",
    mount_tag: "host",
    security_model: "mapped-xattr",
    readonly: false,
  }]);
});

Deno.test("every virtfs security model is accepted", () => {
  for (const model of ["passthrough", "mapped-xattr", "mapped-file", "none"]) {
    const storage = [{ type: "virtfs", path: "/srv", mount_tag: "t", security_model: model }];
    const [share] = validateConfig({ storage }).storage;
    assert.equal(share.type === "virtfs" && share.security_model, model);
  }
});

Deno.test("validateName returns a valid name", () => {
  for (const name of ["a", "web1", "0day", "a.b_c-d", "x".repeat(63)]) {
    assert.equal(validateName(name), name);
  }
});

const nameRows: [string, string, string][] = [
  ["an empty name", "", "invalid name '': a name cannot be empty"],
  [
    "a name with a bad character",
    "web 1",
    "invalid name 'web 1': character ' ' is not allowed (use letters, digits, '.', '_' and '-')",
  ],
  [
    "a name with a slash",
    "a/b",
    "invalid name 'a/b': character '/' is not allowed (use letters, digits, '.', '_' and '-')",
  ],
  [
    "a name with a leading dash",
    "-rf",
    "invalid name '-rf': a name must start with a letter or digit, not '-'",
  ],
  [
    "a name with a leading dot",
    ".hidden",
    "invalid name '.hidden': a name must start with a letter or digit, not '.'",
  ],
  [
    "a name longer than 63 characters",
    "x".repeat(64),
    `invalid name '${"x".repeat(64)}': a name has at most 63 characters (this one has 64)`,
  ],
  [
    "a lower-case UUID",
    "123e4567-e89b-12d3-a456-426614174000",
    "invalid name '123e4567-e89b-12d3-a456-426614174000': a name cannot look like a VM id (a UUID); choose another name",
  ],
  [
    "an upper-case UUID",
    "123E4567-E89B-12D3-A456-426614174000",
    "invalid name '123E4567-E89B-12D3-A456-426614174000': a name cannot look like a VM id (a UUID); choose another name",
  ],
  [
    "a name with a newline",
    "a\nb",
    "invalid name 'a\\nb': character '\\n' is not allowed (use letters, digits, '.', '_' and '-')",
  ],
];

for (const [what, name, message] of nameRows) {
  Deno.test(`validateName rejects ${what}`, () => {
    const error = errorOf(() => validateName(name));
    assert.equal(error.exitCode, 3);
    assert.equal(error.message, message);
  });
  Deno.test(`validateConfig rejects ${what} in name:`, () => {
    assert.equal(errorOf(() => validateConfig({ name })).message, message);
  });
}

const errorRows: [string, Raw, string][] = [
  ["a zero memory", { memory: "0G" }, "invalid memory '0G': use a size like 512M or 2G"],
  [
    "a fraction that is no whole KiB",
    { memory: "1.1G" },
    "invalid memory '1.1G': use a size like 512M or 2G",
  ],
  [
    "a memory with a B suffix",
    { memory: "4GB" },
    "invalid memory '4GB': use a size like 512M or 2G",
  ],
  ["a negative memory", { memory: -1 }, "invalid memory '-1': use a size like 512M or 2G"],
  ["a boolean memory", { memory: true }, "invalid memory 'true': use a size like 512M or 2G"],
  ["an unknown memory unit", { memory: "2X" }, "invalid memory '2X': use a size like 512M or 2G"],
  ["cpu 0", { cpu: 0 }, `invalid cpu '0': ${CPU_HINT}`],
  ["cpu 1025", { cpu: 1025 }, `invalid cpu '1025': ${CPU_HINT}`],
  ["a fractional cpu", { cpu: 1.5 }, `invalid cpu '1.5': ${CPU_HINT}`],
  ["a word for cpu", { cpu: "two" }, `invalid cpu 'two': ${CPU_HINT}`],
  [
    "a name that is not text",
    { name: true },
    "invalid name 'true': a name must be a string",
  ],
  [
    "a display that is not text",
    { display: 5 },
    "invalid display '5': expected a string, got a number",
  ],
  ["an empty vga", { vga: "" }, "invalid vga '': cannot be empty"],
  [
    "a binary that is a list",
    { binary: ["qemu"] },
    `invalid binary '["qemu"]': expected a string, got a list`,
  ],
  [
    "args that are not a list",
    { args: "-S" },
    "invalid args '-S': expected a list of strings, got a string",
  ],
  [
    "an args item that is a boolean",
    { args: [true] },
    "invalid args[0] 'true': expected a string, got true/false",
  ],
  [
    "an args item that daemonizes QEMU",
    { args: ["-daemonize"] },
    "invalid args[0] '-daemonize': this option is managed by qvm",
  ],
  [
    "arguments that are not a list",
    { arguments: { m: "1G" } },
    `invalid arguments '{"m":"1G"}': expected a list, got a map`,
  ],
  [
    "an arguments item that is a number",
    { arguments: [5] },
    "invalid arguments[0] '5': expected a string or a map, got a number",
  ],
  ["an empty flag", { arguments: [""] }, "invalid arguments[0]: an empty flag"],
  [
    "a flag with a value in one string",
    { arguments: ["m 2G"] },
    "invalid arguments[0] 'm 2G': a string item is a flag; write a map like {m: 2G} for an option with a value",
  ],
  [
    "an argument key with a bad character",
    { arguments: [{ "dev ice": "e1000" }] },
    "invalid key 'dev ice' in arguments[0]: use letters, digits, '.', '_' and '-'",
  ],
  [
    "an infinite number in arguments",
    { arguments: [{ smp: Infinity }] },
    "invalid value 'Infinity' in arguments[0]: not a finite number",
  ],
  [
    "an argument that sets the VM's uuid",
    { arguments: [{ uuid: "x" }] },
    "invalid arguments[0]: option 'uuid' is managed by qvm and cannot be set",
  ],
  [
    "a singleton argument given twice",
    { arguments: [{ machine: "pc" }, { machine: "q35" }] },
    "argument 'machine' is given twice (it may appear once)",
  ],
  [
    "storage that is not a list",
    { storage: { name: "hdd" } },
    `invalid storage '{"name":"hdd"}': expected a list, got a map`,
  ],
  [
    "a storage item that is not a map",
    { storage: ["hdd"] },
    "invalid storage[0] 'hdd': expected a map, got a string",
  ],
  [
    "an unknown storage type",
    { storage: [{ type: "vmdk" }] },
    "unknown storage type 'vmdk' (expected qcow2, raw or virtfs)",
  ],
  [
    "an unknown disk interface",
    { storage: [{ name: "hdd", interface: "nvme" }] },
    "unknown interface 'nvme' for storage 'hdd' (expected virtio, sata, ide, scsi or none)",
  ],
  [
    "a bad disk size",
    { storage: [{ name: "hdd", size: "big" }] },
    "invalid size 'big' for storage 'hdd': use a size like 10G or 512M",
  ],
  [
    "a zero disk size",
    { storage: [{ name: "hdd", size: "0G" }] },
    "invalid size '0G' for storage 'hdd': use a size like 10G or 512M",
  ],
  [
    "a duplicate storage name",
    { storage: [{ name: "hdd" }, { name: "hdd" }] },
    "duplicate storage name 'hdd'",
  ],
  [
    "an explicit name equal to another item's default name",
    { storage: [{ name: "storage1" }, {}] },
    "duplicate storage name 'storage1'",
  ],
  [
    "a storage name with a slash (it names the disk's file)",
    { storage: [{ name: "a/b" }] },
    "invalid storage name 'a/b': '/' is not allowed (the name is its disk's file name)",
  ],
  [
    "a storage name starting with a dot",
    { storage: [{ name: ".." }] },
    "invalid storage name '..': it cannot start with '.'",
  ],
  [
    "a storage name with a control character",
    { storage: [{ name: "a\tb" }] },
    "invalid storage name 'a\\tb': control characters are not allowed",
  ],
  [
    "a relative disk file",
    { storage: [{ name: "hdd", file: "hdd.qcow2" }] },
    "invalid file 'hdd.qcow2' for storage 'hdd': must be an absolute path",
  ],
  [
    "a relative backing file",
    { storage: [{ name: "hdd", backing_file: "base.qcow2" }] },
    "invalid backing_file 'base.qcow2' for storage 'hdd': must be an absolute path",
  ],
  [
    "a backing_format without a backing_file",
    { storage: [{ name: "hdd", backing_format: "qcow2" }] },
    "invalid storage 'hdd': backing_format is set but backing_file is not",
  ],
  [
    "more sata disks than AHCI ports",
    { storage: Array.from({ length: 7 }, () => ({ interface: "sata" })) },
    "too many sata disks (7): the AHCI controller has 6 ports",
  ],
  [
    "a virtfs share without path",
    { storage: [{ name: "share", type: "virtfs", mount_tag: "t" }] },
    "invalid storage 'share': virtfs needs a 'path'",
  ],
  [
    "an empty mount_tag",
    { storage: [{ name: "share", type: "virtfs", path: "/srv", mount_tag: "" }] },
    "invalid mount_tag '' for storage 'share': cannot be empty",
  ],
  [
    "a relative virtfs path",
    { storage: [{ name: "share", type: "virtfs", path: "srv", mount_tag: "t" }] },
    "invalid path 'srv' for storage 'share': must be an absolute path",
  ],
  [
    "an unknown security model",
    { storage: [{ name: "s", type: "virtfs", path: "/srv", mount_tag: "t", security_model: "x" }] },
    "unknown security_model 'x' for storage 's' (expected passthrough, mapped-xattr (or mapped), mapped-file or none)",
  ],
  [
    "a readonly that is not a boolean",
    { storage: [{ name: "s", type: "virtfs", path: "/srv", mount_tag: "t", readonly: "maybe" }] },
    "invalid readonly 'maybe' for storage 's': use true or false",
  ],
];

for (const [what, raw, message] of errorRows) {
  Deno.test(`validateConfig rejects ${what} with a one-line UsageError (exit 3)`, () => {
    const error = errorOf(() => validateConfig(raw));
    assert.equal(error.exitCode, 3);
    assert.equal(error.message, message);
    assert.doesNotMatch(error.message, /\n/);
  });
}

Deno.test("unknown top-level keys warn and are ignored", () => {
  const warnings: string[] = [];
  const config = validateConfig({ memory: "1G", colour: "red" }, {
    warn: (message) => warnings.push(message),
  });
  assert.deepEqual(warnings, ["unknown config key 'colour' (ignored)"]);
  assert.deepEqual(config, { memory: "1G", arguments: [], args: [], storage: [] });
});

Deno.test("unknown storage keys warn, including keys of the other storage kind", () => {
  const warnings: string[] = [];
  validateConfig({ storage: [{ name: "hdd", path: "/srv", cache: "none" }] }, {
    warn: (message) => warnings.push(message),
  });
  assert.deepEqual(warnings, [
    "unknown storage key 'path' in 'hdd' (ignored)",
    "unknown storage key 'cache' in 'hdd' (ignored)",
  ]);
});

Deno.test("unknown keys are not an error without a warn callback", () => {
  assert.deepEqual(validateConfig({ colour: "red" }), { arguments: [], args: [], storage: [] });
});

Deno.test("validateConfig does not change its input", () => {
  const raw = { memory: "1g", storage: [{ size: "5g" }] };
  const copy = structuredClone(raw);
  validateConfig(raw);
  assert.deepEqual(raw, copy);
});

Deno.test("disk_size takes a whole size from 1M to 64T, normalized; anything else is refused", () => {
  const ok: [unknown, string][] = [
    ["20G", "20G"],
    ["020g", "20G"],
    [" 2G ", "2G"],
    ["1M", "1M"],
    ["1024K", "1024K"],
    ["64T", "64T"],
    [1048576, "1048576"],
    ["1048576", "1048576"],
  ];
  for (const [value, want] of ok) assert.equal(diskSizeOf(value), want, String(value));
  for (
    const value of [
      "1023K",
      "1048575",
      "65T",
      "64T1",
      "1.5G",
      "0",
      "",
      "lots",
      "2 G",
      true,
      null,
      2.5,
    ]
  ) {
    assert.throws(
      () => diskSizeOf(value),
      /^UsageError: invalid disk_size .*: use a size like 20G \(1M to 64T\)$/,
      String(value),
    );
  }
});
