/**
 * `qvm cp`, `qvm ssh-config` and `qvm ssh`'s pass-through of ssh options, without the cloud
 * guest: which words name a VM, cp's rules for where a source lands, the guest listing parser,
 * how `qvm ssh` tells ssh's options from COMMAND, the config block and the scp command line; then
 * the CLI's refusals (one line, exit 3, nothing copied) and, with the tiny test guest running,
 * the port `ssh-config` gives. The copies themselves run in tests/e2e/cloud_vm_test.ts.
 */
import assert from "node:assert/strict";
import {
  copyRequest,
  type DestState,
  parseOperand,
  parseTreeListing,
  pathInDir,
  type PathKind,
  type PlannedSource,
  planTargets,
} from "../../src/cloud/copy_plan.ts";
import { guestUser } from "../../src/cloud/copy.ts";
import { endScripts, finishScript, type Placed } from "../../src/cloud/_copy_agent.ts";
import { localScpPath, scpArgv, sshArgv, sshConfigBlock, sshWord } from "../../src/cloud/ssh.ts";
import { splitSshWords } from "../../src/cli/ssh.ts";
import { NotFoundError, UsageError } from "../../src/errors.ts";
import { withEnv } from "../helpers/qvm.ts";
import { guestConfig, WAIT_READY } from "../helpers/guest.ts";

const VMS = new Set(["web1", "0b7f1f7e-4a8c-4d6e-9f00-1234567890ab"]);
const isVm = (name: string) => VMS.has(name);

Deno.test("cp: NAME:PATH is a VM path only when NAME is an existing VM and holds no '/'", () => {
  const rows: [string, ReturnType<typeof parseOperand>][] = [
    ["web1:/tmp/x", { kind: "vm", vm: "web1", path: "/tmp/x" }],
    ["web1:", { kind: "vm", vm: "web1", path: "" }],
    ["web1:a:b", { kind: "vm", vm: "web1", path: "a:b" }],
    [
      "0b7f1f7e-4a8c-4d6e-9f00-1234567890ab:/etc/hosts",
      { kind: "vm", vm: "0b7f1f7e-4a8c-4d6e-9f00-1234567890ab", path: "/etc/hosts" },
    ],
    ["./web1:x", { kind: "host", path: "./web1:x" }],
    ["dir/web1:x", { kind: "host", path: "dir/web1:x" }],
    ["/srv/web1:x", { kind: "host", path: "/srv/web1:x" }],
    ["nosuchvm:x", { kind: "host", path: "nosuchvm:x" }],
    [":x", { kind: "host", path: ":x" }],
    ["plain.txt", { kind: "host", path: "plain.txt" }],
  ];
  for (const [word, expected] of rows) assert.deepEqual(parseOperand(word, isVm), expected, word);
});

Deno.test("cp: exactly one side is in a VM; all sources on one side, in one VM", () => {
  const op = (w: string) => parseOperand(w, isVm);
  assert.deepEqual(copyRequest(["a", "b", "web1:/tmp"].map(op)), {
    direction: "in",
    vm: "web1",
    sources: ["a", "b"],
    dest: "/tmp",
  });
  assert.deepEqual(copyRequest(["web1:/a", "web1:b", "."].map(op)), {
    direction: "out",
    vm: "web1",
    sources: ["/a", "b"],
    dest: ".",
  });
  const refusals: [string[], RegExp][] = [
    [["a", "b"], /no side is in a VM/],
    [["a", "webx:/tmp"], /there is no VM 'webx'/],
    [["web1:/a", "web1:/b"], /both sides are in VMs/],
    [["web1:/a", "b", "."], /must all be on one side/],
    [["web1:/a", "0b7f1f7e-4a8c-4d6e-9f00-1234567890ab:/b", "."], /must all be in one VM/],
  ];
  for (const [words, message] of refusals) {
    assert.throws(() => copyRequest(words.map(op)), (e: unknown) => {
      assert.ok(e instanceof UsageError, String(e));
      assert.equal(e.exitCode, 3);
      assert.match(e.message, message);
      return true;
    }, words.join(" "));
  }
});

const file = (path: string): PlannedSource => ({ shown: path, path, kind: "file" });
const dir = (path: string): PlannedSource => ({ shown: path, path, kind: "dir" });
function dest(path: string, kind: PathKind, more: Partial<DestState> = {}): DestState {
  return {
    shown: path,
    path: path.replace(/\/+$/, "") || "/",
    kind,
    trailingSlash: path.endsWith("/"),
    parentIsDir: true,
    ...more,
  };
}

Deno.test("cp: where each source lands follows cp's rules", () => {
  const none = () => "missing" as PathKind;
  // Into an existing directory: DEST/BASE; several sources need one.
  assert.deepEqual(
    planTargets([file("a/x.txt"), dir("src/")], dest("/tmp/", "dir"), none).map((t) => t.path),
    ["/tmp/x.txt", "/tmp/src"],
  );
  // One source onto a missing name: that name; a directory onto its own existing copy merges.
  assert.deepEqual(planTargets([file("x")], dest("/tmp/y", "missing"), none), [
    { source: file("x"), path: "/tmp/y", exists: false },
  ]);
  assert.deepEqual(
    planTargets([dir("d")], dest("/srv", "dir"), (p) => p === "/srv/d" ? "dir" : "missing"),
    [{ source: dir("d"), path: "/srv/d", exists: true }],
  );
  // `.` and `/` copy their contents into DEST itself.
  assert.equal(pathInDir("/tmp/t", "."), "/tmp/t");
  assert.equal(pathInDir("/tmp/t", "/"), "/tmp/t");
  assert.equal(pathInDir("~", "a/b/"), "~/b");
  const refusals: [() => unknown, typeof UsageError, RegExp][] = [
    [
      () => planTargets([file("a"), file("b")], dest("/x", "file"), none),
      UsageError,
      /not a directory/,
    ],
    [
      () => planTargets([file("a"), file("b")], dest("/x", "missing"), none),
      NotFoundError,
      /no such directory/,
    ],
    [
      () => planTargets([file("a")], dest("/x/", "missing"), none),
      NotFoundError,
      /no such directory/,
    ],
    [
      () => planTargets([file("a")], dest("/n/x", "missing", { parentIsDir: false }), none),
      NotFoundError,
      /its folder does not exist/,
    ],
    [
      () => planTargets([dir("d")], dest("/x", "file"), none),
      UsageError,
      /non-directory '\/x' with directory/,
    ],
    [
      () => planTargets([file("a")], dest("/t", "dir"), () => "dir"),
      UsageError,
      /directory '\/t\/a' with non-directory/,
    ],
    [
      () => planTargets([file("p/a"), file("q/a")], dest("/t", "dir"), none),
      UsageError,
      /both be copied to '\/t\/a'/,
    ],
    [
      () => planTargets([file("a")], dest("/dev/null", "other"), none),
      UsageError,
      /not a regular file or directory/,
    ],
  ];
  for (const [call, kind, message] of refusals) {
    assert.throws(call, (e: unknown) => {
      assert.ok(e instanceof kind, String(e));
      assert.equal((e as UsageError).exitCode, 3);
      assert.match((e as Error).message, message);
      return true;
    });
  }
});

Deno.test("cp: the guest's NUL-separated listing keeps any file name and symlink target", () => {
  const text =
    "d 755 4096 sub\0\0f 4755 12 sub/odd\nname :x\0\0l 777 5 link\0../a b\0p 644 0 fifo\0\0";
  assert.deepEqual(parseTreeListing(text), [
    { type: "d", mode: 0o755, size: 4096, rel: "sub", link: "" },
    { type: "f", mode: 0o4755, size: 12, rel: "sub/odd\nname :x", link: "" },
    { type: "l", mode: 0o777, size: 5, rel: "link", link: "../a b" },
    { type: "p", mode: 0o644, size: 0, rel: "fifo", link: "" },
  ]);
  assert.deepEqual(parseTreeListing(""), []);
  assert.throws(() => parseTreeListing("f 644 1 a\0"), /cut short|cannot read/);
  assert.throws(() => parseTreeListing("garbage\0\0"), /cannot read/);
});

Deno.test("cp through the agent: files belong to the user qvm exec runs as", () => {
  assert.equal(guestUser({ cloud_init: { user: "dev" } } as never, "me"), "dev");
  assert.equal(guestUser({ cloud_init: {} } as never, "me"), "me");
  assert.equal(
    guestUser({ cloud_init: { user_data: "#cloud-config\n" } } as never, "me"),
    undefined,
  );
  assert.equal(guestUser({ guest_agent: true } as never, "me"), undefined);
});

/** Runs a generated guest script here, with the same POSIX sh and coreutils a guest has. */
async function sh(script: string): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command("sh", { args: ["-c", script], stdin: "null" }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("cp's guest scripts: finished files move into place; a symlink in the way is replaced, a directory refused", async () => {
  const root = await Deno.makeTempDir({ prefix: "qvm-cp-" });
  try {
    const d = `${root}/d it's`;
    const stage = `${d}/.qvm-cp-t`;
    await Deno.mkdir(stage, { recursive: true, mode: 0o700 });
    await Deno.mkdir(`${root}/other`);
    await Deno.writeTextFile(`${d}/kept`, "old");
    await Deno.symlink("../other", `${d}/sl`);
    await Deno.mkdir(`${d}/isdir`);
    for (const name of ["kept", "sl", "new 1", "isdir"]) {
      await Deno.writeTextFile(`${stage}/${name}`, `new ${name}`);
    }
    const root0 = Deno.uid() === 0;
    // As root, the replaced file belongs to someone else and must stay theirs.
    if (root0) Deno.chownSync(`${d}/kept`, 65534, 65534);
    const me = `${Deno.uid()}:${Deno.gid()}`;
    const placed = (name: string, mode: number, kind: Placed["kind"] = "file", link = "") => ({
      kind,
      temp: `${stage}/${name}`,
      dest: `${d}/${name}`,
      dir: d,
      mode,
      link,
    });
    const ok = await sh(finishScript(
      [
        placed("kept", 0o644),
        placed("sl", 0o640),
        placed("new 1", 0o4750),
        placed("lnk", 0, "symlink", "new 1"),
      ],
      me,
      new Set(),
    ));
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(Deno.readTextFileSync(`${d}/kept`), "new kept");
    assert.equal(Deno.statSync(`${d}/kept`).mode! & 0o7777, 0o644);
    if (root0) assert.equal(Deno.statSync(`${d}/kept`).uid, 65534);
    assert.ok(Deno.lstatSync(`${d}/sl`).isFile, "the symlink in the way was replaced");
    assert.deepEqual([...Deno.readDirSync(`${root}/other`)], [], "and not followed");
    assert.equal(Deno.statSync(`${d}/new 1`).mode! & 0o7777, 0o4750);
    assert.equal(Deno.readLinkSync(`${d}/lnk`), "new 1");
    const refused = await sh(finishScript([placed("isdir", 0o644)], me, new Set()));
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /cannot overwrite directory/);
    assert.equal(Deno.readTextFileSync(`${stage}/isdir`), "new isdir", "left for the ending");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cp's guest scripts: a copy of thousands of folders ends in scripts sh -c can take", async () => {
  const root = await Deno.makeTempDir({ prefix: "qvm-cp-" });
  try {
    const long = "x".repeat(200);
    const made: { path: string; mode: number }[] = [];
    const staging: string[] = [];
    for (let i = 0; i < 1500; i++) {
      const path = `${root}/${long}${i}`;
      await Deno.mkdir(`${path}/.qvm-cp-t`, { recursive: true, mode: 0o700 });
      made.push({ path, mode: i % 2 ? 0o755 : 0o750 });
      staging.push(`${path}/.qvm-cp-t`);
    }
    const scripts = endScripts(staging, made, `${Deno.uid()}:${Deno.gid()}`);
    assert.ok(scripts.length > 1, `${scripts.length} scripts`);
    for (const script of scripts) {
      assert.ok(script.length < 128 * 1024, `${script.length} bytes`);
      const ran = await sh(script);
      assert.equal(ran.code, 0, ran.stderr);
    }
    for (const [i, dir] of made.entries()) {
      assert.deepEqual([...Deno.readDirSync(dir.path)], [], "the private folder is gone");
      assert.equal(Deno.statSync(dir.path).mode! & 0o7777, i % 2 ? 0o755 : 0o750);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("ssh: its own options go to ssh, --flags to qvm, the first other word after VM starts COMMAND", () => {
  const rows: [string[], ReturnType<typeof splitSshWords>][] = [
    [["web1"], { qvm: [], ssh: [], vm: "web1", command: [] }],
    [
      ["web1", "-L", "8080:localhost:80", "-N", "-oServerAliveInterval=5"],
      {
        qvm: [],
        ssh: ["-L", "8080:localhost:80", "-N", "-oServerAliveInterval=5"],
        vm: "web1",
        command: [],
      },
    ],
    [
      ["-A", "-o", "X=1", "web1", "-t", "--", "ls", "-la"],
      { qvm: [], ssh: ["-A", "-o", "X=1", "-t"], vm: "web1", command: ["ls", "-la"] },
    ],
    // Without --, the first word after VM starts COMMAND and its -flags are COMMAND's.
    [["web1", "-v", "uname", "-a"], { qvm: [], ssh: ["-v"], vm: "web1", command: ["uname", "-a"] }],
    // A cluster ending in a value letter takes the next word; -p2222 carries its own.
    [["web1", "-vL", "1:h:2", "-p2222"], {
      qvm: [],
      ssh: ["-vL", "1:h:2", "-p2222"],
      vm: "web1",
      command: [],
    }],
    // qvm's flags, also those written before `ssh` (they arrive after the command's words).
    [
      ["web1", "--debug", "uptime", "--data-dir", "/d", "--json"],
      { qvm: ["--debug", "--data-dir", "/d", "--json"], ssh: [], vm: "web1", command: ["uptime"] },
    ],
    [["web1", "-h"], { qvm: ["-h"], ssh: [], vm: "web1", command: [] }],
    [["web1", "--", "--json"], { qvm: [], ssh: [], vm: "web1", command: ["--json"] }],
  ];
  for (const [args, expected] of rows) {
    assert.deepEqual(splitSshWords(args), expected, args.join(" "));
  }
  assert.throws(() => splitSshWords(["web1", "-L"]), /ssh option '-L' needs a value/);
});

const TARGET = {
  user: "dev",
  port: 40022,
  address: "0.0.0.0",
  key: "/d/ssh/id_ed25519",
  knownHosts: "/d/cloud/x/known_hosts",
  alias: "qvm-x",
};

Deno.test("ssh: the user's options come first, so they win over qvm's", () => {
  const argv = sshArgv(TARGET, { extra: ["-o", "LogLevel=DEBUG1", "-A"], command: ["true"] });
  assert.deepEqual(argv.slice(0, 4), ["ssh", "-o", "LogLevel=DEBUG1", "-A"]);
  assert.ok(argv.indexOf("LogLevel=ERROR") > argv.indexOf("LogLevel=DEBUG1"));
});

Deno.test("ssh-config: a Host block that reaches the VM as qvm ssh does", () => {
  assert.equal(
    sshConfigBlock("web1", TARGET),
    [
      "Host web1",
      "  HostName 127.0.0.1",
      "  Port 40022",
      "  User dev",
      "  IdentityFile /d/ssh/id_ed25519",
      "  IdentitiesOnly yes",
      "  UserKnownHostsFile /d/cloud/x/known_hosts",
      "  StrictHostKeyChecking accept-new",
      "  HostKeyAlias qvm-x",
      "  LogLevel ERROR",
      "",
    ].join("\n"),
  );
  // ssh expands %-tokens in paths and splits words at spaces: a data dir may hold either.
  assert.equal(sshWord("/home/a b/100%/k"), '"/home/a b/100%%/k"');
  assert.throws(() => sshWord('/a"b'), /cannot pass/);
  const spaced = { ...TARGET, key: "/my data/ssh/id", knownHosts: "/my data/kh" };
  assert.match(sshConfigBlock("w", spaced), /IdentityFile "\/my data\/ssh\/id"/);
  assert.ok(sshArgv(spaced).includes('UserKnownHostsFile="/my data/kh"'));
});

Deno.test("cp --via ssh: scp keeps modes, reads a host path with ':' as a host path", () => {
  assert.equal(localScpPath("a:b"), "./a:b");
  assert.equal(localScpPath("/x/a:b"), "/x/a:b");
  assert.equal(localScpPath("d/a:b"), "d/a:b");
  assert.equal(localScpPath("plain"), "plain");
  const argv = scpArgv(TARGET, {
    direction: "in",
    sources: ["a:b", "c"],
    dest: "/tmp/",
    recursive: true,
  });
  assert.deepEqual(argv.slice(0, 3), ["scp", "-p", "-r"]);
  assert.deepEqual(argv.slice(-4), ["--", "./a:b", "c", "dev@127.0.0.1:/tmp/"]);
  assert.ok(argv.includes("BatchMode=yes") && argv.includes("HostKeyAlias=qvm-x"));
  const out = scpArgv(TARGET, { direction: "out", sources: ["~/x"], dest: ".", recursive: false }, {
    quiet: true,
  });
  assert.ok(out.includes("-q") && !out.includes("-r"));
  assert.deepEqual(out.slice(-2), ["dev@127.0.0.1:~/x", "."]);
});

Deno.test("cp refuses bad input in one line, exit 3, before touching the VM", async () => {
  await withEnv(async (env) => {
    await env.ok(["add", "--empty", "--name", "box"]);
    const folder = `${env.root}/folder`;
    await Deno.mkdir(folder);
    const present = await env.file("present.txt", "x");
    const rows: [string[], RegExp][] = [
      [
        ["cp", `${env.root}/missing`, "box:/tmp"],
        /cannot stat '.*missing': no such file or directory/,
      ],
      [["cp", folder, "box:/tmp"], /is a directory \(copy it with -r\)/],
      [["cp", present, "box:/tmp"], /VM 'box' is not running/],
      [["cp", "box:/etc/hosts", "box:/tmp"], /both sides are in VMs/],
      [["cp", present, `${env.root}/other`], /no side is in a VM/],
      [["cp", present, "bxo:/tmp"], /there is no VM 'bxo'/],
      [["cp", "--via", "scp", present, "box:/tmp"], /--via is agent or ssh/],
      [["cp", present], /missing argument DST/],
    ];
    for (const [args, message] of rows) {
      const result = await env.run(args);
      assert.equal(result.code, 3, `${args.join(" ")}: ${result.stderr}`);
      assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
      assert.match(result.stderr, message);
      assert.equal(result.stdout, "");
    }
    const help = await env.run(["cp", "--help"]);
    assert.match(help.stdout, /Usage: qvm cp SRC\.\.\. DST/);
  });
});

Deno.test("ssh-config: the port of the current run, fixed ports when stopped, an auto port only once picked", async () => {
  await withEnv(async (env) => {
    await env.ok([
      "add",
      await guestConfig(env, { name: "tiny", extra: "network:\n  ports: ['auto:22']" }),
    ]);
    await env.ok([
      "add",
      await env.file("fixed.yaml", "name: fixed\nnetwork:\n  ports: ['127.0.0.1:2299:22']\n"),
    ]);
    await env.ok(["add", "--empty", "--name", "plain"]);
    await env.ok([
      "add",
      await env.file(
        "maqet.yaml",
        "name: maqet\nargs: [-netdev, 'user,id=n0,hostfwd=tcp:127.0.0.1:2298-:22']\n",
      ),
    ]);

    // Stopped: the fixed port is known; the auto one is not, so that VM is left out (named: an error).
    const stopped = await env.run(["ssh-config"]);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.ok(
      stopped.stdout.startsWith("Host fixed\n  HostName 127.0.0.1\n  Port 2299\n"),
      stopped.stdout,
    );
    assert.doesNotMatch(stopped.stdout, /Host (tiny|plain)/);
    // A forward written as hostfwd= in the config's own QEMU options counts, as for qvm ports.
    assert.ok(
      stopped.stdout.includes("Host maqet\n  HostName 127.0.0.1\n  Port 2298\n"),
      stopped.stdout,
    );
    assert.match(stopped.stderr, /left out tiny: .*'auto'/);
    const named = await env.run(["ssh-config", "tiny"]);
    assert.equal(named.code, 3);
    assert.match(named.stderr, /is not running, and its SSH port is 'auto'/);
    const none = await env.run(["ssh-config", "plain"]);
    assert.equal(none.code, 3);
    assert.match(none.stderr, /forwards no host port to guest port 22/);

    // Running: the port QEMU was given, as `qvm ports` shows it.
    await env.ok(["start", "tiny", ...WAIT_READY]);
    const ports = JSON.parse(await env.ok(["ports", "tiny", "--json"]));
    const port = ports.forwards[0].host_port;
    assert.ok(typeof port === "number" && port > 0);
    const block = await env.ok(["ssh-config", "tiny"]);
    assert.match(block, new RegExp(`^Host tiny\\n  HostName 127\\.0\\.0\\.1\\n  Port ${port}\\n`));
    const all = JSON.parse(await env.ok(["ssh-config", "--json"]));
    assert.deepEqual(all.map((b: { name: string }) => b.name).sort(), ["fixed", "maqet", "tiny"]);
    assert.equal(all.find((b: { name: string }) => b.name === "tiny").port, port);

    // cp to a VM with no agent channel goes to scp (here: no sshd, so scp fails, exit 1);
    // with --via agent it is refused up front.
    const present = await env.file("present.txt", "x");
    const noAgent = await env.run(["cp", "--via", "agent", present, "tiny:/tmp"]);
    assert.equal(noAgent.code, 3);
    assert.match(noAgent.stderr, /has no guest agent channel/);
    await env.ok(["stop", "tiny", "--force"]);
  });
});
