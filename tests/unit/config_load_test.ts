import assert from "node:assert/strict";
import { NotFoundError, PermissionError, UsageError } from "../../src/errors.ts";
import { loadConfigFile, loadConfigs, MAX_CONFIG_BYTES } from "../../src/config/mod.ts";

/** Runs `fn` with a fresh temp dir, removed afterwards whatever happens. */
async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qvm-config-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error);
    return error;
  }
  assert.fail("expected a rejection");
}

Deno.test("loadConfigFile reads a YAML map", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/vm.yaml`;
    await Deno.writeTextFile(path, "name: web\nmemory: 2G\ncpu: 2\narguments:\n  - nographic\n");
    assert.deepEqual(await loadConfigFile(path), {
      name: "web",
      memory: "2G",
      cpu: 2,
      arguments: ["nographic"],
    });
  });
});

Deno.test("an empty file or a file of comments is an empty config", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/empty.yaml`, "");
    await Deno.writeTextFile(`${dir}/comments.yaml`, "# nothing here\n\n");
    assert.deepEqual(await loadConfigFile(`${dir}/empty.yaml`), {});
    assert.deepEqual(await loadConfigFile(`${dir}/comments.yaml`), {});
  });
});

const yamlErrorRows: [string, string, RegExp][] = [
  [
    "an unclosed flow list",
    "memory: 1G\narguments: [nographic\ncpu: 2\n",
    /^FILE:3:1: Flow sequence in block collection must be sufficiently indented and end with a \]$/,
  ],
  ["a duplicate key", "memory: 1G\ncpu: 1\nmemory: 2G\n", /^FILE:3:1: Map keys must be unique$/],
  ["a tab used as indentation", "storage:\n\t- name: a\n", /^FILE:2:1: /],
  [
    "several documents in one file",
    "memory: 1G\n---\ncpu: 2\n",
    /^FILE:2:1: Source contains multiple documents/,
  ],
];

for (const [what, source, pattern] of yamlErrorRows) {
  Deno.test(`a YAML error (${what}) is one UsageError line FILE:LINE:COL: message`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/bad.yaml`;
      await Deno.writeTextFile(path, source);
      const error = await rejection(loadConfigFile(path));
      assert.ok(error instanceof UsageError);
      assert.equal(error.exitCode, 3);
      assert.doesNotMatch(error.message, /\n/);
      assert.match(error.message.replace(path, "FILE"), pattern);
    });
  });
}

Deno.test("an alias bomb is refused", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bomb.yaml`;
    const lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 8; i++) {
      const previous = String.fromCharCode(96 + i);
      const current = String.fromCharCode(97 + i);
      lines.push(`${current}: &${current} [${Array(10).fill(`*${previous}`).join(", ")}]`);
    }
    await Deno.writeTextFile(path, lines.join("\n") + "\n");
    const error = await rejection(loadConfigFile(path));
    assert.ok(error instanceof UsageError);
    assert.match(error.message, new RegExp(`^${path}: .*alias`, "i"));
  });
});

const topLevelRows: [string, string, string][] = [
  ["a list", "- a\n- b\n", "a list"],
  ["a scalar", "just text\n", "a string"],
];

for (const [what, source, kind] of topLevelRows) {
  Deno.test(`a config whose top level is ${what} is a UsageError`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/top.yaml`;
      await Deno.writeTextFile(path, source);
      const error = await rejection(loadConfigFile(path));
      assert.ok(error instanceof UsageError);
      assert.equal(
        error.message,
        `${path}: the top level must be a map of config keys, not ${kind}`,
      );
    });
  });
}

Deno.test("a missing config file is a NotFoundError (exit 3)", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/missing.yaml`;
    const error = await rejection(loadConfigFile(path));
    assert.ok(error instanceof NotFoundError);
    assert.equal(error.exitCode, 3);
    assert.equal(error.message, `${path}: no such config file`);
  });
});

Deno.test("a folder given as a config file is a UsageError", async () => {
  await withTempDir(async (dir) => {
    const error = await rejection(loadConfigFile(dir));
    assert.ok(error instanceof UsageError);
    assert.equal(error.message, `${dir}: is a folder, not a config file`);
  });
});

Deno.test({
  name: "an unreadable config file is a PermissionError (exit 4) with the OS reason",
  ignore: Deno.build.os === "windows" || Deno.uid() === 0,
  fn: async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/secret.yaml`;
      await Deno.writeTextFile(path, "memory: 1G\n");
      await Deno.chmod(path, 0o000);
      const error = await rejection(loadConfigFile(path));
      assert.ok(error instanceof PermissionError);
      assert.equal(error.exitCode, 4);
      assert.match(error.message, new RegExp(`^${path}: cannot read config: Permission denied`));
    });
  },
});

Deno.test("a config file Deno may not read is a PermissionError (exit 4)", async () => {
  await withTempDir(async (dir) => {
    const repo = new URL("../..", import.meta.url).pathname;
    const probe = `${dir}/probe.ts`;
    const modUrl = new URL("../../src/config/mod.ts", import.meta.url).href;
    await Deno.writeTextFile(
      probe,
      `import { loadConfigFile } from ${JSON.stringify(modUrl)};
try {
  await loadConfigFile(${JSON.stringify(`${dir}/vm.yaml`)});
} catch (error) {
  console.log(JSON.stringify([error.name, error.exitCode, error.message]));
}
`,
    );
    await Deno.writeTextFile(`${dir}/vm.yaml`, "memory: 1G\n");
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", `--allow-read=${repo},${probe}`, probe],
      cwd: repo,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout).trim();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    const [name, exitCode, message] = JSON.parse(stdout);
    assert.equal(name, "PermissionError");
    assert.equal(exitCode, 4);
    assert.match(message, new RegExp(`^${dir}/vm.yaml: cannot read config: .*read access`));
  });
});

Deno.test("a config file larger than 1 MiB is refused before it is parsed", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/huge.yaml`;
    await Deno.writeTextFile(path, "# " + "x".repeat(MAX_CONFIG_BYTES) + "\n");
    const error = await rejection(loadConfigFile(path));
    assert.ok(error instanceof UsageError);
    assert.equal(error.exitCode, 3);
    assert.equal(error.message, `${path}: config is larger than 1 MiB`);
  });
});

Deno.test("a config file of exactly 1 MiB is read", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/big.yaml`;
    const head = "memory: 1G\n# ";
    await Deno.writeTextFile(path, head + "x".repeat(MAX_CONFIG_BYTES - head.length - 1) + "\n");
    assert.equal((await Deno.stat(path)).size, MAX_CONFIG_BYTES);
    assert.deepEqual(await loadConfigFile(path), { memory: "1G" });
  });
});

Deno.test("a config file that is not UTF-8 is a UsageError", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/latin1.yaml`;
    await Deno.writeFile(path, new Uint8Array([0x6e, 0x61, 0x6d, 0x65, 0x3a, 0x20, 0xe9, 0x0a]));
    const error = await rejection(loadConfigFile(path));
    assert.ok(error instanceof UsageError);
    assert.equal(error.message, `${path}: config is not valid UTF-8 text`);
  });
});

Deno.test("relative paths resolve against the config file's folder", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/conf`);
    const path = `${dir}/conf/vm.yaml`;
    await Deno.writeTextFile(
      path,
      `binary: ./bin/qemu
arguments:
  - {kernel: boot/vmlinuz}
  - {initrd: boot/initrd.img}
  - {bios: ../fw/bios.bin}
  - {dtb: board.dtb}
  - {pflash: OVMF.fd}
  - {drive: {file: extra.img, if: virtio}}
  - {drive: null, file: other.img, if: ide}
  - {kernel2: not/a/path}
  - {append: "root=/dev/vda console=ttyS0"}
storage:
  - {name: hdd, file: disks/hdd.qcow2, backing_file: ../base.qcow2}
  - {name: abs, file: /var/abs.qcow2}
  - {name: share, type: virtfs, path: shared, mount_tag: host}
`,
    );
    const conf = `${dir}/conf`;
    assert.deepEqual(await loadConfigFile(path), {
      binary: `${conf}/bin/qemu`,
      arguments: [
        { kernel: `${conf}/boot/vmlinuz` },
        { initrd: `${conf}/boot/initrd.img` },
        { bios: `${dir}/fw/bios.bin` },
        { dtb: `${conf}/board.dtb` },
        { pflash: `${conf}/OVMF.fd` },
        { drive: { file: `${conf}/extra.img`, if: "virtio" } },
        { drive: null, file: `${conf}/other.img`, if: "ide" },
        { kernel2: "not/a/path" },
        { append: "root=/dev/vda console=ttyS0" },
      ],
      storage: [
        { name: "hdd", file: `${conf}/disks/hdd.qcow2`, backing_file: `${conf}/base.qcow2` },
        { name: "abs", file: "/var/abs.qcow2" },
        { name: "share", type: "virtfs", path: `${conf}/shared`, mount_tag: "host" },
      ],
    });
  });
});

Deno.test("a binary without a slash is a command name and is not resolved", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/vm.yaml`;
    await Deno.writeTextFile(path, "binary: qemu-system-x86_64\n");
    assert.deepEqual(await loadConfigFile(path), { binary: "qemu-system-x86_64" });
  });
});

Deno.test("a relative config path resolves against the working directory first", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/vm.yaml`, "storage: [{name: hdd, file: hdd.qcow2}]\n");
    const cwd = Deno.cwd();
    Deno.chdir(dir);
    try {
      const config = await loadConfigFile("vm.yaml");
      assert.deepEqual(config.storage, [{
        name: "hdd",
        file: `${await Deno.realPath(dir)}/hdd.qcow2`,
      }]);
    } finally {
      Deno.chdir(cwd);
    }
  });
});

const perFileRows: [string, string, string][] = [
  [
    "a storage name used twice",
    "storage:\n  - {name: hdd}\n  - {name: hdd, size: 1G}\n",
    "duplicate storage name 'hdd'",
  ],
  [
    "an explicit storage name equal to another item's default",
    "storage:\n  - {size: 1G}\n  - {name: storage0}\n",
    "duplicate storage name 'storage0'",
  ],
  [
    "a singleton argument given twice",
    "arguments:\n  - {display: gtk}\n  - {display: none}\n",
    "argument 'display' is given twice (it may appear once)",
  ],
  [
    "a singleton flag given twice",
    "arguments:\n  - {kernel: /k}\n  - {kernel: /k2}\n",
    "argument 'kernel' is given twice (it may appear once)",
  ],
  [
    "a key that is a qvm command",
    "name: a\nstart:\n  wait_for: qmp\n",
    "config key 'start' is a qvm command, not a VM setting: run 'qvm start VM' instead " +
    "(a config holds VM settings only)",
  ],
];

for (const [what, source, message] of perFileRows) {
  Deno.test(`one file with ${what} is a UsageError naming the file`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/vm.yaml`;
      await Deno.writeTextFile(path, source);
      const error = await rejection(loadConfigFile(path));
      assert.ok(error instanceof UsageError);
      assert.equal(error.exitCode, 3);
      assert.equal(error.message, `${path}: ${message}`);
    });
  });
}

Deno.test("loadConfigs merges files left to right, then overrides, then validates", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/base.yaml`,
      "name: base\nmemory: 1G\narguments:\n  - {machine: pc}\nstorage:\n  - {size: 10G}\n",
    );
    await Deno.writeTextFile(
      `${dir}/more.yaml`,
      "arguments:\n  - {machine: q35}\n  - nographic\nstorage:\n  - {size: 20G}\n  - {name: data, type: raw}\n",
    );
    const config = await loadConfigs([`${dir}/base.yaml`, `${dir}/more.yaml`], {
      name: "web",
      memory: "2G",
      cpu: undefined,
      binary: undefined,
    });
    assert.deepEqual(config, {
      name: "web",
      memory: "2G",
      arguments: [{ machine: "q35" }, "nographic"],
      args: [],
      storage: [
        { name: "storage0", type: "qcow2", size: "10G", interface: "virtio" },
        { name: "storage1", type: "qcow2", size: "20G", interface: "virtio" },
        { name: "data", type: "raw", size: "10G", interface: "virtio" },
      ],
    });
  });
});

Deno.test("applying a file with an unnamed disk adds a disk and never replaces one", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.yaml`, "storage:\n  - {size: 1G}\n");
    await Deno.writeTextFile(`${dir}/b.yaml`, `storage:\n  - {file: ${dir}/b.qcow2}\n`);
    const first = await loadConfigs([`${dir}/a.yaml`], {});
    const warnings: string[] = [];
    const applied = await loadConfigs([`${dir}/b.yaml`], {}, {
      base: first,
      warn: (m) => warnings.push(m),
    });
    assert.deepEqual(applied.storage, [
      { name: "storage0", type: "qcow2", size: "1G", interface: "virtio" },
      { name: "storage1", type: "qcow2", file: `${dir}/b.qcow2`, size: "10G", interface: "virtio" },
    ]);
    assert.deepEqual(warnings, [
      "an unnamed storage item is added as 'storage1' (name it to change it later instead of " +
      "adding another)",
    ]);
  });
});

Deno.test("a --memory override replaces an {m: ...} argument from a file", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/vm.yaml`, "arguments:\n  - {m: 1G}\n  - nographic\n");
    const config = await loadConfigs([`${dir}/vm.yaml`], { memory: "4G" });
    assert.equal(config.memory, "4G");
    assert.deepEqual(config.arguments, ["nographic"]);
  });
});

Deno.test("loadConfigs with no files validates the overrides alone", async () => {
  assert.deepEqual(await loadConfigs([], { cpu: "2" }), {
    cpu: 2,
    arguments: [],
    args: [],
    storage: [],
  });
});

Deno.test("loadConfigs passes unknown-key warnings to warn", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/vm.yaml`, "memory: 1G\nnics: user\n");
    const warnings: string[] = [];
    await loadConfigs([`${dir}/vm.yaml`], {}, { warn: (m) => warnings.push(m) });
    assert.deepEqual(warnings, ["unknown config key 'nics' (ignored)"]);
  });
});

Deno.test("loadConfigs rejects an invalid merged config with a UsageError", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/vm.yaml`, "memory: lots\n");
    const error = await rejection(loadConfigs([`${dir}/vm.yaml`], {}));
    assert.ok(error instanceof UsageError);
    assert.equal(error.message, "invalid memory 'lots': use a size like 512M or 2G");
  });
});

Deno.test("loadConfigs stops at the first missing file", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/ok.yaml`, "memory: 1G\n");
    const error = await rejection(loadConfigs([`${dir}/ok.yaml`, `${dir}/nope.yaml`], {}));
    assert.ok(error instanceof NotFoundError);
    assert.equal(error.message, `${dir}/nope.yaml: no such config file`);
  });
});

Deno.test("a maqet-style config file loads and validates", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/maqet.yaml`;
    await Deno.writeTextFile(
      path,
      `# A VM as maqet users write it
binary: /usr/bin/qemu-system-x86_64
memory: 4G
cpu: 2
arguments:
  - display: gtk
    zoom-to-fit: on
  - vga: std
  - device:
      driver: virtio-net-pci
      netdev: n0
  - netdev: user
    id: n0
    hostfwd: tcp::2222-:22
  - enable-kvm
storage:
  - name: hdd
    size: 20G
    type: qcow2
    interface: virtio
  - name: iso
    type: raw
    file: ./images/install.iso
    interface: ide
`,
    );
    assert.deepEqual(await loadConfigs([path], {}), {
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
      args: [],
      storage: [
        { name: "hdd", type: "qcow2", size: "20G", interface: "virtio" },
        {
          name: "iso",
          type: "raw",
          file: `${dir}/images/install.iso`,
          size: "10G",
          interface: "ide",
        },
      ],
    });
  });
});

Deno.test("no config module imports yaml statically (only commands that read YAML load it)", async () => {
  for await (const entry of Deno.readDir(new URL("../../src/config/", import.meta.url))) {
    if (!entry.name.endsWith(".ts")) continue;
    const source = await Deno.readTextFile(
      new URL(`../../src/config/${entry.name}`, import.meta.url),
    );
    assert.doesNotMatch(
      source,
      /^\s*(import|export)\b[^;]*from\s+["'](npm:)?yaml["']/m,
      entry.name,
    );
  }
});
