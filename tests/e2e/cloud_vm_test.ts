/**
 * A real Debian 12 cloud guest end to end, booted once under TCG (about a minute here): a config
 * with only `image:` (the cached base image, which boots by its own bootloader), a port forward
 * and cloud_init, besides name, size and the accelerator →
 * `start --wait-for ssh` → `ssh` runs a command → `exec` through the guest agent passes output
 * and exit codes through → `ip` shows the DHCP address → a live snapshot with the guest's file
 * systems frozen, and its load thawed → a snapshot interrupted while the guest is frozen: SIGTERM
 * and SIGINT thaw it on the way out, after SIGKILL the next command thaws it → qvm's SSH key and
 * known_hosts under attack → exec with a big stdin, past the agent's output limit, and past its
 * timeout → `cp` in and out (agent and scp), `ssh-config` used by plain OpenSSH, ssh options
 * passed through → `stop` ends at the ACPI step → `rm`.
 */
import assert from "node:assert/strict";
import { cloudGuestReady, ensureCloudGuest } from "../fixture/cloud_guest.ts";
import { agentCall, agentExec, agentFreezeStatus } from "../../src/cloud/agent.ts";
import { keyPaths } from "../../src/cloud/ssh.ts";
import { exists, type QvmEnv, type QvmResult, withEnv } from "../helpers/qvm.ts";

// Building the guest needs root (mmdebstrap); without root and without a cached guest, skip.
const canRun = Deno.uid() === 0 || await cloudGuestReady();

Deno.test({
  name:
    "a Debian cloud guest: start --wait-for ssh, ssh, exec, ip, frozen snapshot, cp, ssh-config, stop by ACPI",
  ignore: !canRun,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const guest = await ensureCloudGuest();
    await withEnv(async (env) => {
      const keyDir = `${env.root}/keys`;
      await Deno.mkdir(keyDir);
      const keygen = await new Deno.Command("ssh-keygen", {
        args: ["-q", "-t", "ed25519", "-N", "", "-f", `${keyDir}/id_ed25519`],
      }).output();
      assert.ok(keygen.success);
      const config = await env.file(
        "cloud1.yaml",
        [
          "name: cloud1",
          "memory: 1G",
          "cpu: 2",
          // KVM does not run guests on the test machines: TCG only, no KVM attempt first.
          "arguments:",
          "  - accel: tcg",
          // The image boots by itself (its own bootloader): no kernel, initrd or append here.
          `image: ${guest.image}`,
          "network:",
          "  ports: ['auto:22']",
          "cloud_init:",
          "  user: tester",
          "  ssh_authorized_keys: [keys/id_ed25519.pub]",
          "",
        ].join("\n"),
      );
      await env.ok(["add", config]);
      const since = Date.now();
      const started = await env.run(["start", "cloud1", "--wait-for", "ssh", "--timeout", "600"]);
      console.error(
        `cloud guest: start --wait-for ssh took ${Math.round((Date.now() - since) / 1000)} s`,
      );
      assert.equal(
        started.code,
        0,
        started.stderr + (await env.run(["logs", "cloud1"])).stdout.slice(-3000),
      );

      const hostname = await env.run(["ssh", "cloud1", "--", "cat", "/etc/hostname"]);
      assert.equal(hostname.code, 0, hostname.stderr);
      assert.equal(hostname.stdout.trim(), "cloud1");
      const failing = await env.run(["ssh", "cloud1", "--", "exit 5"]);
      assert.equal(failing.code, 5, "ssh passes the remote exit code through");

      const user = await env.run(["exec", "cloud1", "--", "id", "-un"]);
      assert.equal(user.code, 0, user.stderr);
      assert.equal(user.stdout.trim(), "tester", "exec runs as the cloud_init user");
      const root = await env.run(["exec", "cloud1", "--root", "--", "id", "-un"]);
      assert.equal(root.stdout.trim(), "root", "--root runs as the agent does");
      const owner = await env.run(["exec", "cloud1", "--", "stat", "-c", "%U", "/home/tester"]);
      assert.equal(owner.stdout.trim(), "tester", "cloud-init made the user");
      const code = await env.run([
        "exec",
        "cloud1",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
      ]);
      assert.deepEqual([code.code, code.stdout, code.stderr], [7, "out\n", "err\n"]);
      const input = await env.run(["exec", "cloud1", "--stdin", "--", "cat"], {
        stdin: "piped in\n",
      });
      assert.equal(input.stdout, "piped in\n");

      // The image's own bootloader booted the root on its overlay, the first virtio disk.
      const rootFs = await env.run(["exec", "cloud1", "--", "findmnt", "-no", "SOURCE", "/"]);
      assert.equal(rootFs.stdout.trim(), "/dev/vda2", rootFs.stderr);
      const ip = await env.run(["ip", "cloud1"]);
      assert.equal(ip.code, 0, ip.stderr);
      assert.match(ip.stdout, /^eth0 10\.0\.2\.15\/24$/m);
      const status = await env.status("cloud1");
      assert.ok(status.addresses.some((a: { address: string }) => a.address === "10.0.2.15"));
      // A live snapshot freezes the guest's file systems around the save and thaws them after;
      // loading it brings back a guest saved frozen, which qvm thaws.
      const socket = `${env.runtimeDir}/${status.id}.ga`;
      const snap = await env.run(["snapshot", "create", "cloud1", "s1", "--live", "--json"]);
      assert.equal(snap.code, 0, snap.stderr);
      const quiesce = JSON.parse(snap.stdout).quiesce;
      assert.ok(quiesce.frozen >= 1, `froze ${quiesce.frozen} file systems`);
      assert.equal(await agentFreezeStatus(socket, 10_000), "thawed");
      const load = await env.run(["snapshot", "load", "cloud1", "s1"]);
      assert.equal(load.code, 0, load.stderr);
      assert.match(load.stderr, /thawed the guest's file systems/);
      assert.equal(await agentFreezeStatus(socket, 10_000), "thawed");
      await frozenGuestSteps(env, { id: status.id, socket });
      await sshIdentitySteps(env, status.id);
      await bigExecSteps(env);

      const ports = JSON.parse(await env.ok(["ports", "cloud1", "--json"]));
      assert.equal(ports.forwards[0].guest_port, 22);
      assert.deepEqual(status.forwards[0].host, ports.forwards[0].host_port);

      await copySteps(env, socket);

      // What the guest writes is what a full clone gets.
      const wrote = await env.run([
        "ssh",
        "cloud1",
        "--",
        "sh -c 'echo written-before-clone > /home/tester/mark && sync'",
      ]);
      assert.equal(wrote.code, 0, wrote.stderr);

      const stopAt = Date.now();
      const stopped = await env.run(["stop", "cloud1", "--timeout", "120"]);
      console.error(`cloud guest: stop took ${Math.round((Date.now() - stopAt) / 1000)} s`);
      assert.equal(stopped.code, 0, stopped.stderr);
      assert.match(stopped.stdout, /\(ACPI power-off\)/, "the guest powered off on ACPI");
      const cloned = JSON.parse(await env.ok(["clone", "cloud1", "cloud2", "--json"]));
      assert.equal(cloned.copied.length, 1);
      const { from, to } = cloned.copied[0];
      const compare = await new Deno.Command("qemu-img", {
        args: ["compare", "-f", "qcow2", "-F", "qcow2", from, to],
        stdout: "piped",
      }).output();
      assert.equal(compare.code, 0, "the clone's disk differs from what the guest wrote");
      const copy = JSON.parse(
        new TextDecoder().decode(
          (await new Deno.Command("qemu-img", {
            args: ["info", "--output=json", to],
            stdout: "piped",
          })
            .output()).stdout,
        ),
      );
      assert.equal(copy["backing-filename"], guest.image, "the copy is an overlay of the image");
      await env.ok(["rm", "cloud2", "--delete-storage"]);
      assert.ok((await Deno.stat(guest.image)).isFile);
      await env.ok(["rm", "cloud1"]);
    });
  },
});

/** `count` random bytes (getRandomValues gives at most 64 KiB a call). */
function randomBytes(count: number): Uint8Array {
  const bytes = new Uint8Array(count);
  for (let i = 0; i < count; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
}

async function sameFile(a: string, b: string): Promise<void> {
  assert.deepEqual(await Deno.readFile(a), await Deno.readFile(b), `${a} and ${b} differ`);
}

/** Every entry below `root`: relative path, kind, permission bits, and contents or link target. */
async function treeOf(root: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  const names = [...Deno.readDirSync(rel ? `${root}/${rel}` : root)].map((e) => e.name).sort();
  for (const name of names) {
    const path = rel ? `${rel}/${name}` : name;
    const info = Deno.lstatSync(`${root}/${path}`);
    const mode = ((info.mode ?? 0) & 0o7777).toString(8);
    if (info.isSymlink) out.push(`${path} -> ${Deno.readLinkSync(`${root}/${path}`)}`);
    else if (info.isDirectory) out.push(`${path}/ ${mode}`, ...await treeOf(root, path));
    else out.push(`${path} ${mode} ${await Deno.readTextFile(`${root}/${path}`)}`);
  }
  return out;
}

/** Guest entries whose name starts with `.qvm-cp-` under `dirs` (what a copy must never leave). */
async function leftovers(socket: string, dirs: string[]): Promise<string> {
  const found = await agentExec(socket, ["find", ...dirs, "-name", ".qvm-cp-*"]);
  return new TextDecoder().decode(found.stdout);
}

/**
 * `qvm cp` both ways through the agent (an 8 MB random file, every byte value, a tree with -r,
 * several sources, Ctrl-C), then with scp (`--via ssh`); `ssh-config` read by plain ssh and scp;
 * `qvm ssh` passing ssh's own options; and an agent a killed client left mid-command.
 */
async function copySteps(env: QvmEnv, socket: string): Promise<void> {
  const work = `${env.root}/cp`;
  await Deno.mkdir(work);
  const guestSays = async (argv: string[]) =>
    new TextDecoder().decode((await agentExec(socket, argv)).stdout).trim();

  // An 8 MB random file in and out through the agent: identical bytes, mode kept, the user's.
  const big = `${work}/big.bin`;
  await Deno.writeFile(big, randomBytes(8_000_000), { mode: 0o640 });
  await Deno.chmod(big, 0o640);
  let since = Date.now();
  const cpIn = await env.run(["cp", big, "cloud1:/tmp/", "--json"]);
  console.error(`cloud guest: cp 8 MB in took ${Math.round((Date.now() - since) / 1000)} s`);
  assert.equal(cpIn.code, 0, cpIn.stderr);
  assert.deepEqual(JSON.parse(cpIn.stdout), {
    vm: "cloud1",
    direction: "in",
    via: "agent",
    files: 1,
    directories: 0,
    symlinks: 0,
    bytes: 8_000_000,
    skipped: 0,
  });
  assert.equal(await guestSays(["stat", "-c", "%a %U %s", "/tmp/big.bin"]), "640 tester 8000000");
  since = Date.now();
  const back = `${work}/back.bin`;
  const cpOut = await env.run(["cp", "cloud1:/tmp/big.bin", back]);
  console.error(`cloud guest: cp 8 MB out took ${Math.round((Date.now() - since) / 1000)} s`);
  assert.equal(cpOut.code, 0, cpOut.stderr);
  await sameFile(big, back);
  assert.equal(Deno.statSync(back).mode! & 0o7777, 0o640);

  // Every byte value, to a relative path (the user's home) and back.
  const bytes = `${work}/bytes.bin`;
  await Deno.writeFile(bytes, Uint8Array.from({ length: 256 * 64 }, (_, i) => i % 256));
  await env.ok(["cp", bytes, "cloud1:"]);
  assert.equal(await guestSays(["stat", "-c", "%s", "/home/tester/bytes.bin"]), String(256 * 64));
  await env.ok(["cp", "cloud1:bytes.bin", `${work}/bytes.back`]);
  await sameFile(bytes, `${work}/bytes.back`);

  // A tree with -r, in and out: folders, modes, a symlink, an empty folder; a fifo is skipped.
  const tree = `${work}/tree`;
  await Deno.mkdir(`${tree}/sub/deep`, { recursive: true });
  await Deno.mkdir(`${tree}/empty`);
  await Deno.writeTextFile(`${tree}/a.txt`, "a\n");
  await Deno.writeTextFile(`${tree}/sub/run me.sh`, "#!/bin/sh\n");
  await Deno.writeTextFile(`${tree}/sub/deep/secret`, "s\n");
  await Deno.chmod(`${tree}/sub/run me.sh`, 0o755);
  await Deno.chmod(`${tree}/sub/deep/secret`, 0o600);
  await Deno.chmod(`${tree}/sub/deep`, 0o750);
  await Deno.symlink("a.txt", `${tree}/link`);
  const fifo = await new Deno.Command("mkfifo", { args: [`${tree}/fifo`] }).output();
  assert.ok(fifo.success);
  const cpTree = await env.run(["cp", "-r", tree, "cloud1:/tmp", "--json"]);
  assert.equal(cpTree.code, 0, cpTree.stderr);
  assert.match(cpTree.stderr, /skipped '.*fifo': not a regular file/);
  const counts = JSON.parse(cpTree.stdout);
  assert.deepEqual([counts.files, counts.directories, counts.symlinks, counts.skipped], [
    3,
    4,
    1,
    1,
  ]);
  assert.equal(await guestSays(["stat", "-c", "%a %U", "/tmp/tree"]), "755 tester");
  const listed = await guestSays([
    "find",
    "/tmp/tree",
    "-mindepth",
    "1",
    "-printf",
    "%P|%m|%u|%l\\n",
  ]);
  assert.deepEqual(listed.split("\n").sort(), [
    "a.txt|644|tester|",
    "empty|755|tester|",
    "link|777|tester|a.txt",
    "sub/deep/secret|600|tester|",
    "sub/deep|750|tester|",
    "sub/run me.sh|755|tester|",
    "sub|755|tester|",
  ]);
  await Deno.remove(`${tree}/fifo`);
  await env.ok(["cp", "-r", "cloud1:/tmp/tree", `${work}/tree.back`]);
  assert.deepEqual(await treeOf(`${work}/tree.back`), await treeOf(tree));

  // Several sources into a folder; refusals name the problem and copy nothing.
  await env.ok(["cp", `${tree}/a.txt`, bytes, "cloud1:/tmp/tree/empty"]);
  assert.equal(await guestSays(["ls", "/tmp/tree/empty"]), "a.txt\nbytes.bin");
  for (
    const [args, message] of [
      [["cp", "cloud1:/tmp/nothing", work], /cannot stat 'cloud1:\/tmp\/nothing'/],
      [["cp", "cloud1:/tmp/tree", work], /is a directory \(copy it with -r\)/],
      [
        ["cp", big, bytes, "cloud1:/tmp/big.bin"],
        /target 'cloud1:\/tmp\/big.bin' is not a directory/,
      ],
      [["cp", big, "cloud1:/nowhere/x"], /its folder does not exist/],
    ] as [string[], RegExp][]
  ) {
    const refused = await env.run(args);
    assert.equal(refused.code, 3, `${args.join(" ")}: ${refused.stderr}`);
    assert.match(refused.stderr, message);
  }
  assert.equal(await leftovers(socket, ["/tmp", "/home/tester"]), "");

  // Ctrl-C mid-copy: exit 130, and neither the file nor the copy's private folder is left.
  const huge = `${work}/huge.bin`;
  await Deno.writeFile(huge, randomBytes(24_000_000));
  const child = env.command(["cp", huge, "cloud1:/tmp/huge.bin"]).spawn();
  const began = Date.now();
  while (await leftovers(socket, ["/tmp"]) === "") {
    assert.ok(Date.now() - began < 60_000, "the copy's private folder never appeared");
    await new Promise((r) => setTimeout(r, 200));
  }
  Deno.kill(child.pid, "SIGINT");
  const interrupted = await child.output();
  assert.equal(interrupted.code, 130, new TextDecoder().decode(interrupted.stderr));
  assert.equal(await leftovers(socket, ["/tmp"]), "");
  assert.equal(await guestSays(["ls", "/tmp/huge.bin"]), "");

  // A terminal shows the copy's progress.
  const tty = await new Deno.Command("script", {
    args: [
      "-qfec",
      [Deno.execPath(), "run", "-A", "--quiet", new URL("../../main.ts", import.meta.url).pathname]
        .concat(["cp", bytes, big, "cloud1:/tmp/tree/empty"]).map((w) => `'${w}'`).join(" "),
      "/dev/null",
    ],
    env: { QVM_DATA_DIR: env.dataDir, QVM_RUNTIME_DIR: env.runtimeDir, COLUMNS: "200" },
    stdin: "null",
  }).output();
  const drawn = new TextDecoder().decode(tty.stdout);
  assert.equal(tty.code, 0, drawn);
  assert.match(drawn, /copying [\d.]+[KM]? of 7\.6M \(\d+%\)/);

  // With scp over the SSH forward: the same bytes both ways.
  since = Date.now();
  await env.ok(["cp", "--via", "ssh", big, "cloud1:/tmp/scp.bin"]);
  await env.ok(["cp", "--via", "ssh", "cloud1:/tmp/scp.bin", `${work}/scp.back`]);
  console.error(
    `cloud guest: cp --via ssh 8 MB in and out took ${Math.round((Date.now() - since) / 1000)} s`,
  );
  await sameFile(big, `${work}/scp.back`);
  assert.equal(await guestSays(["stat", "-c", "%a %U", "/tmp/scp.bin"]), "640 tester");

  // ssh-config, read by plain OpenSSH: ssh and scp.
  const config = `${work}/vms.ssh`;
  await Deno.writeTextFile(config, await env.ok(["ssh-config"]));
  const ssh = await new Deno.Command("ssh", { args: ["-F", config, "cloud1", "true"] }).output();
  assert.equal(ssh.code, 0, new TextDecoder().decode(ssh.stderr));
  const scp = await new Deno.Command("scp", {
    args: ["-F", config, "cloud1:/tmp/big.bin", `${work}/plain-scp.bin`],
  }).output();
  assert.equal(scp.code, 0, new TextDecoder().decode(scp.stderr));
  await sameFile(big, `${work}/plain-scp.bin`);

  // qvm ssh passes ssh's options on (before its own, so they win).
  const forced = await env.run(["ssh", "cloud1", "-o", "RequestTTY=force", "--", "tty"]);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /^\/dev\/pts\/\d+/);
  const plain = await env.run(["ssh", "cloud1", "--", "tty"]);
  assert.match(plain.stdout, /not a tty/);
  const verbose = await env.run(["ssh", "-o", "LogLevel=DEBUG1", "cloud1", "true"]);
  assert.equal(verbose.code, 0, verbose.stderr);
  assert.match(verbose.stderr, /debug1: /);

  // A client killed halfway through a command (a big write) leaves the agent usable.
  const conn = await Deno.connect({ transport: "unix", path: socket });
  await conn.write(
    new TextEncoder().encode('{"execute":"guest-file-write","arguments":{"buf-b64":"AAAA'),
  );
  conn.close();
  await agentCall(socket, { execute: "guest-ping" }, { timeoutMs: 10_000 });
}

/**
 * Starts a live snapshot of cloud1 while the test holds the VM's QMP socket (QEMU serves one
 * client at a time), so qvm freezes the guest and then waits for QMP: a frozen guest, for as long
 * as the test likes. `whileFrozen` runs then; `signal` is sent to qvm; the socket is let go once
 * qvm has exited. Returns what qvm said and exited with.
 */
async function interruptFrozenSnapshot(
  env: QvmEnv,
  vm: { id: string; socket: string },
  options: { signal: Deno.Signal; whileFrozen?: () => Promise<void> },
): Promise<{ code: number; stderr: string }> {
  const hold = await Deno.connect({ transport: "unix", path: `${env.runtimeDir}/${vm.id}.qmp` });
  try {
    const child = env.command(["snapshot", "create", "cloud1", "never", "--live"]).spawn();
    const since = Date.now();
    while (await agentFreezeStatus(vm.socket, 10_000) !== "frozen") {
      assert.ok(Date.now() - since < 20_000, "qvm froze the guest before it asked QMP");
      await new Promise((r) => setTimeout(r, 100));
    }
    await options.whileFrozen?.();
    child.kill(options.signal);
    const out = await child.output();
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
  } finally {
    hold.close();
  }
}

/** A guest frozen for a live snapshot is thawed on every way qvm can end, SIGKILL included. */
async function frozenGuestSteps(env: QvmEnv, vm: { id: string; socket: string }): Promise<void> {
  const marker = `${env.runtimeDir}/${vm.id}.frozen`;
  // While the snapshot holds the freeze, readers say `frozen` and leave it be; exec refuses.
  const killed = await interruptFrozenSnapshot(env, vm, {
    signal: "SIGKILL",
    whileFrozen: async () => {
      assert.match(await env.ok(["status", "cloud1"]), /^cloud1: frozen \(pid \d+\)/);
      const listed = JSON.parse(await env.ok(["ls", "--json"]));
      assert.equal(listed.find((v: { name: string }) => v.name === "cloud1").status, "frozen");
      const refused = await env.run(["exec", "cloud1", "--", "true"]);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /file systems are frozen for a live snapshot/);
      assert.equal(await agentFreezeStatus(vm.socket, 10_000), "frozen", "readers left it");
    },
  });
  assert.equal(killed.code, 137);
  // SIGKILL left the guest frozen; the next command of each kind finds and thaws it.
  assert.equal(await agentFreezeStatus(vm.socket, 10_000), "frozen");
  const status = await env.run(["status", "cloud1"]);
  assert.match(status.stdout, /^cloud1: running/);
  assert.match(status.stderr, /thawed VM 'cloud1''s file systems, left frozen by an interrupted/);
  assert.equal(await agentFreezeStatus(vm.socket, 10_000), "thawed");
  assert.equal(exists(marker), false);
  const readers: [string, string[], (r: QvmResult) => void][] = [
    ["ls", ["ls", "--json"], (r) => assert.match(r.stdout, /"status":"running"/)],
    ["exec", ["exec", "cloud1", "--", "touch", "/tmp/after-thaw"], () => {}],
    ["ssh", ["ssh", "cloud1", "--", "touch /tmp/after-thaw"], () => {}],
    ["snapshot", ["snapshot", "list", "cloud1"], (r) => assert.match(r.stdout, /s1/)],
    ["doctor --fix", ["doctor", "--fix", "--json"], (r) => {
      const found = JSON.parse(r.stdout).checks.find((c: { check: string }) =>
        c.check === "frozen_guest"
      );
      assert.equal(found.status, "fixed", r.stdout);
    }],
  ];
  for (const [what, args, check] of readers) {
    assert.equal((await interruptFrozenSnapshot(env, vm, { signal: "SIGKILL" })).code, 137);
    if (what === "doctor --fix") {
      // Without --fix doctor reports the frozen guest and leaves it.
      const report = await env.run(["doctor", "--json"]);
      const found = JSON.parse(report.stdout).checks.find((c: { check: string }) =>
        c.check === "frozen_guest"
      );
      assert.equal(found.status, "problem", report.stdout);
      assert.equal(await agentFreezeStatus(vm.socket, 10_000), "frozen");
    }
    const result = await env.run(args);
    assert.equal(result.code === 0 || what === "doctor --fix", true, `${what}: ${result.stderr}`);
    check(result);
    assert.equal(await agentFreezeStatus(vm.socket, 10_000), "thawed", `${what} thawed it`);
    assert.equal(exists(marker), false, `${what} removed the mark`);
  }
  // SIGTERM and Ctrl-C thaw on qvm's way out, and say so.
  for (const [signal, code] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
    const ended = await interruptFrozenSnapshot(env, vm, { signal });
    assert.equal(ended.code, code, ended.stderr);
    assert.match(ended.stderr, /interrupted: VM 'cloud1''s file systems were thawed/);
    assert.equal(await agentFreezeStatus(vm.socket, 10_000), "thawed", signal);
    assert.equal(exists(marker), false);
  }
  // An error after the freeze (the name exists) thaws before qvm reports it.
  const again = await env.run(["snapshot", "create", "cloud1", "s1", "--live"]);
  assert.equal(again.code, 3, again.stderr);
  assert.equal(await agentFreezeStatus(vm.socket, 10_000), "thawed");
  assert.equal(exists(marker), false);
}

/**
 * qvm's key and the VM's known_hosts: a lost .pub is rebuilt from the key the guest already
 * trusts (a new key would lock qvm out), a key others can read is set back to 0600, and a
 * known_hosts planted as a symlink is replaced, its target untouched.
 */
async function sshIdentitySteps(env: QvmEnv, id: string): Promise<void> {
  const key = keyPaths(env.dataDir);
  const secret = await Deno.readFile(key.private);
  await Deno.remove(key.public);
  await Deno.chmod(key.private, 0o644);
  const knownHosts = `${env.dataDir}/cloud/${id}/known_hosts`;
  const target = await env.file("elsewhere", "not a known_hosts file\n");
  await Deno.remove(knownHosts).catch(() => {});
  await Deno.symlink(target, knownHosts);
  const ssh = await env.run(["ssh", "cloud1", "--", "echo in"]);
  assert.equal(ssh.code, 0, ssh.stderr);
  assert.equal(ssh.stdout, "in\n");
  assert.deepEqual(await Deno.readFile(key.private), secret, "the key the guest trusts is kept");
  assert.equal((await Deno.stat(key.private)).mode! & 0o777, 0o600);
  assert.match(ssh.stderr, /rebuilt .*id_ed25519\.pub/);
  assert.match(ssh.stderr, /was mode 0644, which ssh refuses: set to 0600/);
  assert.match(ssh.stderr, /removed .*known_hosts: it was a symlink/);
  assert.equal(await Deno.readTextFile(target), "not a known_hosts file\n");
  const info = await Deno.lstat(knownHosts);
  assert.ok(info.isFile && !info.isSymlink, "ssh wrote a known_hosts of qvm's own");
}

/**
 * exec with more than the agent takes in one message: a stdin of several MiB streams through a
 * guest file; output past the agent's 16 MiB is said, with a non-zero exit; a command that
 * outlives --timeout is named by its guest pid, and still runs.
 */
async function bigExecSteps(env: QvmEnv): Promise<void> {
  const input = new Uint8Array(3 * 1024 * 1024 + 7).map((_, i) => (i * 7919) % 251);
  const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", input)).toHex();
  const child = env.command(["exec", "cloud1", "--stdin", "--", "sha256sum"], { stdin: "piped" })
    .spawn();
  const writer = child.stdin.getWriter();
  await writer.write(input);
  await writer.close();
  const out = await child.output();
  const text = new TextDecoder();
  assert.equal(out.code, 0, text.decode(out.stderr));
  assert.equal(text.decode(out.stdout).split(" ")[0], sum);
  const leftovers = await env.run(["exec", "cloud1", "--root", "--", "sh", "-c", "ls /tmp"]);
  assert.doesNotMatch(leftovers.stdout, /qvm-stdin/, "the input file is gone");

  const late = await env.run(["exec", "cloud1", "--timeout", "2", "--", "sleep", "300"]);
  assert.equal(late.code, 2, late.stderr);
  const pid = late.stderr.match(/still runs in the guest \(pid (\d+)\)/)?.[1];
  assert.ok(pid, late.stderr);
  assert.match(late.stderr, new RegExp(`qvm exec cloud1 --root -- kill ${pid}`));
  assert.equal((await env.run(["exec", "cloud1", "--root", "--", "kill", pid])).code, 0);

  const since = Date.now();
  const cut = await env.command(["exec", "cloud1", "--", "head", "-c", "17000000", "/dev/zero"])
    .output();
  console.error(
    `cloud guest: 16 MiB of exec output took ${Math.round((Date.now() - since) / 1000)} s`,
  );
  assert.equal(cut.code, 1);
  assert.equal(cut.stdout.length, 16 * 1024 * 1024);
  const said = text.decode(cut.stderr).trim().split("\n");
  assert.equal(said.length, 1, said.join("\n"));
  assert.match(said[0], /^qvm: the guest agent cut the command's stdout at 16 MiB/);
}
