/**
 * From a cloud image URL to a shell, under TCG, two ways in one run: `qvm launch URL` (download,
 * verify against SHA256SUMS, define, start, wait for SSH and cloud-init) followed by
 * `qvm ssh VM -- true`, against the same job by hand (curl, sha256sum -c, qemu-img create,
 * cloud-localds, qemu-system-x86_64 -daemonize, ssh retried until it runs `true`). The image is
 * the Debian cloud guest the tests build, served from a local HTTP server, so the network is not
 * measured. Prints a markdown table.
 *
 *   npx deno run -A bench/launch_vs_manual.ts
 *
 * Needs QEMU, OpenSSH, curl and cloud-localds (`apt-get install -y cloud-image-utils`).
 */
import { ensureCloudGuest } from "../tests/fixture/cloud_guest.ts";
import { serveImages, sha256OfFile } from "../tests/helpers/image_server.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const TIMEOUT_MS = 900_000;

async function run(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

async function must(cmd: string, args: string[], options: { cwd?: string } = {}): Promise<string> {
  const out = await run(cmd, args, options);
  if (out.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${out.code}: ${out.stderr}`);
  return out.stdout;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** `qvm launch URL` until it returns, then `qvm ssh VM -- true`; seconds for each part. */
async function viaQvm(url: string, root: string): Promise<{ launch: number; ssh: number }> {
  const env = {
    QVM_DATA_DIR: `${root}/data`,
    QVM_RUNTIME_DIR: `${root}/run`,
    NO_COLOR: "1",
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/root",
  };
  const qvm = (args: string[]) =>
    run(Deno.execPath(), ["run", "-A", "--quiet", MAIN, ...args], { env });
  const began = performance.now();
  const launched = await qvm(["launch", url, "--accel", "tcg", "--timeout", "900", "--json"]);
  const launch = (performance.now() - began) / 1000;
  if (launched.code !== 0) throw new Error(`qvm launch: ${launched.stderr}`);
  const { name } = JSON.parse(launched.stdout);
  const sshBegan = performance.now();
  const ssh = await qvm(["ssh", name, "--", "true"]);
  if (ssh.code !== 0) throw new Error(`qvm ssh: ${ssh.stderr}`);
  const sshSeconds = (performance.now() - sshBegan) / 1000;
  await qvm(["stop", name, "--force"]);
  return { launch, ssh: sshSeconds };
}

/** The same job by hand; seconds until ssh first runs `true`, and until cloud-init is done. */
async function byHand(
  url: string,
  sumsUrl: string,
  root: string,
): Promise<{ ssh: number; cloudInit: number }> {
  const dir = `${root}/manual`;
  await Deno.mkdir(dir, { recursive: true });
  const key = `${dir}/id_ed25519`;
  await must("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
  const pub = (await Deno.readTextFile(`${key}.pub`)).trim();
  await Deno.writeTextFile(
    `${dir}/user-data`,
    `#cloud-config\nusers:\n  - name: dev\n    sudo: ALL=(ALL) NOPASSWD:ALL\n` +
      `    ssh_authorized_keys: ["${pub}"]\n`,
  );
  const port = freePort();
  const began = performance.now();
  await must("curl", ["-sSfO", url], { cwd: dir });
  await must("curl", ["-sSfO", sumsUrl], { cwd: dir });
  await must("sha256sum", ["-c", "--ignore-missing", "SHA256SUMS"], { cwd: dir });
  const base = url.slice(url.lastIndexOf("/") + 1);
  await must("qemu-img", ["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", "vm.qcow2"], {
    cwd: dir,
  });
  await must("cloud-localds", ["seed.img", "user-data"], { cwd: dir });
  await must("qemu-system-x86_64", [
    "-accel",
    "tcg",
    "-m",
    "1G",
    "-smp",
    "2",
    "-drive",
    `file=${dir}/vm.qcow2,if=virtio,format=qcow2`,
    "-drive",
    `file=${dir}/seed.img,if=virtio,format=raw`,
    "-netdev",
    `user,id=n0,hostfwd=tcp:127.0.0.1:${port}-:22`,
    "-device",
    "virtio-net-pci,netdev=n0",
    "-display",
    "none",
    "-daemonize",
    "-pidfile",
    `${dir}/qemu.pid`,
  ], { cwd: dir });
  const sshArgs = [
    "-p",
    String(port),
    "-i",
    key,
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    `UserKnownHostsFile=${dir}/known_hosts`,
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "LogLevel=ERROR",
    "dev@127.0.0.1",
  ];
  try {
    while (performance.now() - began < TIMEOUT_MS) {
      if ((await run("ssh", [...sshArgs, "true"])).code === 0) {
        const ssh = (performance.now() - began) / 1000;
        await run("ssh", [...sshArgs, "cloud-init status --wait"]);
        return { ssh, cloudInit: (performance.now() - began) / 1000 };
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    throw new Error("the guest started by hand never answered over ssh");
  } finally {
    const pid = Number(await Deno.readTextFile(`${dir}/qemu.pid`).catch(() => "0"));
    if (pid > 0) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
}

if (import.meta.main) {
  const guest = await ensureCloudGuest();
  const sum = await sha256OfFile(guest.image);
  const server = serveImages({
    "/img/debian12.qcow2": { file: guest.image },
    "/img/SHA256SUMS": { bytes: new TextEncoder().encode(`${sum}  debian12.qcow2\n`) },
  });
  const root = await Deno.makeTempDir({ dir: "/tmp", prefix: "qvmb-" });
  try {
    const url = `${server.base}/img/debian12.qcow2`;
    const size = (await Deno.stat(guest.image)).size;
    const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
    const qvm = await viaQvm(url, root);
    const hand = await byHand(url, `${server.base}/img/SHA256SUMS`, root);
    const total = qvm.launch + qvm.ssh;
    const row = (what: string, seconds: number) => `| ${what} | ${seconds.toFixed(1)} s |`;
    console.log(
      [
        `From a cloud image URL to a shell under TCG (Debian 12 cloud guest, ${
          Math.round(size / 2 ** 20)
        } MiB qcow2, served on 127.0.0.1; 1 GiB, 2 vCPUs; load average before: ${load}):`,
        "",
        "| way | wall time |",
        "| --- | --- |",
        row(
          "`qvm launch URL --accel tcg` (download, verify, define, boot; returns once SSH runs " +
            "a command and cloud-init is done)",
          qvm.launch,
        ),
        row("then `qvm ssh VM -- true`", qvm.ssh),
        row("qvm, total", total),
        row(
          "by hand (curl, sha256sum -c, qemu-img create, cloud-localds, qemu-system-x86_64 " +
            "-daemonize), until `ssh ... true` first works",
          hand.ssh,
        ),
        row("by hand, until `cloud-init status --wait` returns", hand.cloudInit),
        `| qvm total / by hand until cloud-init is done | ${
          (total / hand.cloudInit).toFixed(2)
        }x |`,
      ].join("\n"),
    );
  } finally {
    await server.close();
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
        if (cmdline.includes(root) && cmdline.includes("qemu-system")) {
          Deno.kill(Number(entry.name), "SIGKILL");
        }
      } catch { /* gone */ }
    }
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}
