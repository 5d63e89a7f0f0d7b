/**
 * The image cache and the flags of `launch`/`add`, without booting a guest: checksum files in
 * their three shapes, the catalog and its override, downloads from a local HTTP server that are
 * verified (a mismatch, a missing checksum, a cut-off or non-image download, an image with a
 * backing file: all refused with exit 3, nothing cached, no VM), resumed with `Range`, pulled
 * once, listed and removed (refused while a VM stands on the image).
 */
import assert from "node:assert/strict";
import { checksumFor, parseChecksums, parseSha256 } from "../../src/cloud/checksums.ts";
import { BUILTIN_CATALOG, CATALOG_ENV, loadCatalog } from "../../src/cloud/catalog.ts";
import { exists, type QvmEnv, withEnv } from "../helpers/qvm.ts";
import { pullProgressLine, showPull } from "../../src/cli/_pull.ts";
import { type ImageServer, serveImages, sha256Of } from "../helpers/image_server.ts";

const A = "a".repeat(64);
const B = "b".repeat(128);

Deno.test("checksum files: coreutils text and binary lines, BSD lines, SHA-256 and SHA-512", () => {
  const lines = parseChecksums(
    [
      `${A}  debian.qcow2`,
      `${A.toUpperCase().replace(/A/g, "C")} *noble.img`,
      `SHA512 (Fedora.qcow2) = ${B}`,
      `SHA256 (./other.qcow2) = ${A}`,
      "# a comment",
      "-----BEGIN PGP SIGNATURE-----",
      `${"d".repeat(40)}  sha1-only.qcow2`,
      `${B}  debian.qcow2`,
    ].join("\r\n"),
  );
  assert.deepEqual(checksumFor(lines, "noble.img"), { algorithm: "sha256", hex: "c".repeat(64) });
  assert.deepEqual(checksumFor(lines, "Fedora.qcow2"), { algorithm: "sha512", hex: B });
  assert.deepEqual(checksumFor(lines, "other.qcow2"), { algorithm: "sha256", hex: A });
  // Both listed: the stronger digest is the one checked.
  assert.deepEqual(checksumFor(lines, "debian.qcow2"), { algorithm: "sha512", hex: B });
  assert.equal(checksumFor(lines, "sha1-only.qcow2"), undefined);
  assert.equal(checksumFor(lines, "missing.qcow2"), undefined);
  assert.deepEqual(parseSha256(`sha256:${A.toUpperCase()}`), { algorithm: "sha256", hex: A });
  assert.equal(parseSha256("abc"), undefined);
});

Deno.test("the catalog: official cloud images with their checksum files, overridable by $QVM_CATALOG", async () => {
  const names = BUILTIN_CATALOG.map((e) => e.name);
  for (const name of ["debian-12", "debian-13", "ubuntu-24.04", "ubuntu-22.04"]) {
    assert.ok(names.includes(name), name);
  }
  for (const entry of BUILTIN_CATALOG) {
    assert.match(entry.url, /^https:\/\/cloud(-images)?\.(debian\.org|ubuntu\.com)\//);
    assert.match(entry.checksums!, /\/SHA(256|512)SUMS$/);
    assert.equal(entry.format, "qcow2");
  }
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/catalog.yaml`;
    await Deno.writeTextFile(
      file,
      "debian-12:\n  url: http://127.0.0.1:1/d12.qcow2\nmine:\n  url: http://127.0.0.1:1/m.img\n" +
        `  sha256: ${A}\n  format: raw\n`,
    );
    Deno.env.set(CATALOG_ENV, file);
    const catalog = await loadCatalog();
    assert.equal(catalog.find((e) => e.name === "debian-12")?.url, "http://127.0.0.1:1/d12.qcow2");
    assert.deepEqual(catalog.find((e) => e.name === "mine"), {
      name: "mine",
      url: "http://127.0.0.1:1/m.img",
      sha256: A,
      format: "raw",
      description: "http://127.0.0.1:1/m.img",
    });
    assert.ok(catalog.some((e) => e.name === "ubuntu-24.04"), "the other built-in names stay");
    await Deno.writeTextFile(file, "bad:\n  url: ftp://x/y\n");
    await assert.rejects(loadCatalog(), /catalog entry 'bad': url must be an http/);
  } finally {
    Deno.env.delete(CATALOG_ENV);
    await Deno.remove(dir, { recursive: true });
  }
});

/** A small, sound qcow2 (64 MiB virtual) made by qemu-img, as bytes. */
async function tinyQcow2(
  env: QvmEnv,
  name = "tiny.qcow2",
  extra: string[] = [],
): Promise<Uint8Array<ArrayBuffer>> {
  const path = `${env.root}/${name}`;
  const out = await new Deno.Command("qemu-img", {
    args: ["create", "-q", "-f", "qcow2", ...extra, path, "64M"],
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return await Deno.readFile(path);
}

/** The cache folder's image entries (records and images), ignoring the partial-download folder. */
function cacheEntries(env: QvmEnv): string[] {
  try {
    return [...Deno.readDirSync(`${env.dataDir}/images`)].map((e) => e.name)
      .filter((n) => n !== "partial").sort();
  } catch {
    return [];
  }
}

function partials(env: QvmEnv): string[] {
  try {
    return [...Deno.readDirSync(`${env.dataDir}/images/partial`)].map((e) => e.name);
  } catch {
    return [];
  }
}

async function withServer(fn: (server: ImageServer, env: QvmEnv) => Promise<void>) {
  const server = serveImages();
  try {
    await withEnv((env) => fn(server, env));
  } finally {
    await server.close();
  }
}

/** Asserts that nothing was cached and no VM defined after a refused pull or launch. */
async function assertNothingLeft(env: QvmEnv): Promise<void> {
  assert.deepEqual(cacheEntries(env), []);
  const ls = JSON.parse(await env.ok(["image", "ls", "--json"]));
  assert.deepEqual(ls.images, []);
  assert.deepEqual(JSON.parse(await env.ok(["ls", "--json"])), [], "no VM was defined");
}

Deno.test("image pull: verified against SHA256SUMS beside it, downloaded once, listed, removed", async () => {
  await withServer(async (server, env) => {
    const image = await tinyQcow2(env);
    const sum = await sha256Of(image);
    server.files.set("/d/tiny.qcow2", { bytes: image });
    server.files.set("/d/SHA256SUMS", {
      bytes: new TextEncoder().encode(`${sum} *tiny.qcow2\n`),
    });
    const url = `${server.base}/d/tiny.qcow2`;
    const pulled = await env.run(["image", "pull", url, "--json"]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const entry = JSON.parse(pulled.stdout);
    assert.equal(entry.sha256, sum);
    assert.equal(entry.fetched, true);
    assert.equal(entry.verified, `sha256 listed in ${server.base}/d/SHA256SUMS`);
    assert.equal(entry.format, "qcow2");
    assert.equal(entry.path, `${env.dataDir}/images/sha256-${sum}.qcow2`);
    assert.deepEqual(await Deno.readFile(entry.path), image);
    assert.equal((await Deno.stat(entry.path)).mode! & 0o777, 0o400, "never written");
    const downloads = () => server.requests.filter((r) => r.path === "/d/tiny.qcow2").length;
    assert.equal(downloads(), 1);

    const again = JSON.parse(await env.ok(["image", "pull", url, "--json"]));
    assert.equal(again.fetched, false);
    assert.equal(downloads(), 1, "a cached image is not downloaded again");

    const ls = JSON.parse(await env.ok(["image", "ls", "--json"]));
    assert.equal(ls.images.length, 1);
    assert.deepEqual(ls.images[0].urls, [url]);
    assert.deepEqual(ls.images[0].vms, []);
    const text = await env.ok(["image", "ls"]);
    assert.match(text, new RegExp(`^${sum.slice(0, 12)}\\s+tiny\\.qcow2\\s+qcow2\\s`, "m"));

    const rm = await env.run(["image", "rm", sum.slice(0, 12)]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /^removed [0-9a-f]{12} \(tiny\.qcow2\)$/m);
    assert.deepEqual(cacheEntries(env), []);
    const unknown = await env.run(["image", "rm", "nothing-like-it"]);
    assert.equal(unknown.code, 3);
    assert.match(unknown.stderr, /^qvm: no cached image 'nothing-like-it'/);
  });
});

Deno.test("a download whose checksum does not match is refused: exit 3, nothing cached, no VM", async () => {
  await withServer(async (server, env) => {
    const image = await tinyQcow2(env);
    server.files.set("/d/tiny.qcow2", { bytes: image });
    server.files.set("/d/SHA256SUMS", {
      bytes: new TextEncoder().encode(`${"0".repeat(64)}  tiny.qcow2\n`),
    });
    const url = `${server.base}/d/tiny.qcow2`;
    for (const args of [["launch", url, "--accel", "tcg"], ["image", "pull", url]]) {
      const result = await env.run(args);
      assert.equal(result.code, 3, result.stderr);
      assert.match(
        result.stderr,
        /^qvm: http:\/\/127\.0\.0\.1:\d+\/d\/tiny\.qcow2: checksum mismatch \(expected sha256 0{16}…, got [0-9a-f]{16}…\): the download was deleted and nothing was cached\n$/,
      );
      await assertNothingLeft(env);
      assert.deepEqual(partials(env), [], "the bad download is gone");
    }
    // --sha256 is checked the same way, and wins over the checksum file.
    const given = await env.run(["image", "pull", url, "--sha256", "1".repeat(64)]);
    assert.equal(given.code, 3);
    assert.match(given.stderr, /checksum mismatch \(expected sha256 1{16}/);
    const right = await env.run(["image", "pull", url, "--sha256", await sha256Of(image)]);
    assert.equal(right.code, 0, right.stderr);
    assert.match(right.stdout, /sha256 given with --sha256/);
  });
});

Deno.test("a download no checksum file lists is refused unless --insecure-no-checksum", async () => {
  await withServer(async (server, env) => {
    const image = await tinyQcow2(env);
    server.files.set("/d/tiny.qcow2", { bytes: image });
    server.files.set("/d/SHA256SUMS", {
      bytes: new TextEncoder().encode(`${A}  another.qcow2\n`),
    });
    const url = `${server.base}/d/tiny.qcow2`;
    const refused = await env.run(["launch", url, "--accel", "tcg"]);
    assert.equal(refused.code, 3, refused.stderr);
    assert.equal(
      refused.stderr,
      `qvm: no checksum for tiny.qcow2: ${server.base}/d/SHA256SUMS and ${server.base}/d/SHA512SUMS ` +
        "do not list it; give --sha256 HEX, or --insecure-no-checksum to use it unverified\n",
    );
    assert.equal(
      server.requests.filter((r) => r.path === "/d/tiny.qcow2").length,
      0,
      "nothing is downloaded without a checksum to check it against",
    );
    await assertNothingLeft(env);
    const insecure = await env.run(["image", "pull", url, "--insecure-no-checksum", "--json"]);
    assert.equal(insecure.code, 0, insecure.stderr);
    assert.equal(JSON.parse(insecure.stdout).verified, "not verified (--insecure-no-checksum)");
  });
});

Deno.test("SHA512SUMS is read when there is no SHA256SUMS; a catalog name pulls through $QVM_CATALOG", async () => {
  await withServer(async (server, env) => {
    const image = await tinyQcow2(env);
    const path = `${env.root}/tiny.qcow2`;
    const sha512 = new TextDecoder().decode(
      (await new Deno.Command("sha512sum", { args: [path], stdout: "piped" }).output()).stdout,
    ).split(" ")[0];
    server.files.set("/r/tiny-latest.qcow2", { bytes: image });
    server.files.set("/r/SHA512SUMS", {
      bytes: new TextEncoder().encode(`SHA512 (tiny-latest.qcow2) = ${sha512}\n`),
    });
    const catalog = await env.file(
      "catalog.json",
      JSON.stringify({ tiny: { url: `${server.base}/r/tiny-latest.qcow2` } }),
    );
    const pulled = await env.run(["image", "pull", "tiny", "--json"], {
      env: { QVM_CATALOG: catalog },
    });
    assert.equal(pulled.code, 0, pulled.stderr);
    const entry = JSON.parse(pulled.stdout);
    assert.equal(entry.alias, "tiny");
    assert.equal(entry.sha512, sha512);
    assert.equal(entry.verified, `sha512 listed in ${server.base}/r/SHA512SUMS`);
    assert.deepEqual(
      server.requests.map((r) => r.path),
      ["/r/SHA256SUMS", "/r/SHA512SUMS", "/r/tiny-latest.qcow2"],
    );
    const names = await env.run(["image", "catalog"], { env: { QVM_CATALOG: catalog } });
    assert.match(names.stdout, /^tiny\s/m);
    assert.match(names.stdout, /^debian-12\s/m);
    const unknown = await env.run(["launch", "no-such-name"], { env: { QVM_CATALOG: catalog } });
    assert.equal(unknown.code, 3);
    assert.match(
      unknown.stderr,
      /^qvm: unknown image 'no-such-name': not a file, an http\(s\) URL, nor a catalog name \(debian-12, .*tiny\)\n$/,
    );
  });
});

Deno.test("a download cut short is refused with nothing cached, and the next pull resumes it with Range", async () => {
  await withServer(async (server, env) => {
    // Random bytes after a qcow2 header: a file big enough to cut, that qemu-img still checks.
    const image = await tinyQcow2(env);
    const sum = await sha256Of(image);
    server.files.set("/d/tiny.qcow2", { bytes: image });
    server.files.set("/d/SHA256SUMS", { bytes: new TextEncoder().encode(`${sum}  tiny.qcow2\n`) });
    const url = `${server.base}/d/tiny.qcow2`;
    const cut = Math.floor(image.length / 2);
    server.cutAfter.set("/d/tiny.qcow2", cut);
    const refused = await env.run(["launch", url, "--accel", "tcg"]);
    assert.equal(refused.code, 3, refused.stderr);
    assert.equal(
      refused.stderr,
      `qvm: download of ${url} ended after ${cut} of ${image.length} bytes; what arrived is ` +
        "kept and the next try resumes it\n",
    );
    await assertNothingLeft(env);
    const ls = JSON.parse(await env.ok(["image", "ls", "--json"]));
    assert.deepEqual(ls.partial, [{ url, bytes: cut, total: image.length }]);

    server.cutAfter.delete("/d/tiny.qcow2");
    const resumed = await env.run(["image", "pull", url, "--json"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(
      server.requests.filter((r) => r.path === "/d/tiny.qcow2").map((r) => r.range),
      [null, `bytes=${cut}-`],
    );
    assert.equal(JSON.parse(resumed.stdout).sha256, sum);
    assert.deepEqual(partials(env), [], "the partial download became the cache entry");
  });
});

Deno.test("a download that is not a standalone disk image is refused even when its checksum matches", async () => {
  await withServer(async (server, env) => {
    const html = new TextEncoder().encode("<html><body>Moved to another mirror</body></html>\n");
    const backed = await tinyQcow2(env, "backed.qcow2", ["-b", "/etc/hostname", "-F", "raw"]);
    const cases: [string, Uint8Array<ArrayBuffer>, RegExp][] = [
      ["page.qcow2", html, /is not a disk image \(no qcow2 header, no partition table\)/],
      [
        "backed.qcow2",
        backed,
        /names a backing file \(\/etc\/hostname\): a base image must stand alone/,
      ],
    ];
    for (const [name, bytes, message] of cases) {
      server.files.set(`/x/${name}`, { bytes });
      const url = `${server.base}/x/${name}`;
      const result = await env.run(["launch", url, "--sha256", await sha256Of(bytes)]);
      assert.equal(result.code, 3, result.stderr);
      assert.match(result.stderr, message);
      assert.match(result.stderr, /the download was deleted, nothing was cached\n$/);
      await assertNothingLeft(env);
      assert.deepEqual(partials(env), []);
    }
    // A catalog entry that says qcow2 refuses a raw disk.
    const raw = new Uint8Array(1 << 20);
    raw[510] = 0x55;
    raw[511] = 0xaa;
    server.files.set("/x/disk.img", { bytes: raw });
    const catalog = await env.file(
      "catalog.yaml",
      `disk:\n  url: ${server.base}/x/disk.img\n  sha256: ${await sha256Of(raw)}\n`,
    );
    const wrong = await env.run(["image", "pull", "disk"], { env: { QVM_CATALOG: catalog } });
    assert.equal(wrong.code, 3);
    assert.match(wrong.stderr, /is a raw image, not qcow2 as expected/);
    // The same disk with the format the catalog names is a fine raw image.
    await Deno.writeTextFile(catalog, `format: raw\n`, { append: true });
    const contents = await Deno.readTextFile(catalog);
    await Deno.writeTextFile(catalog, contents.replace("format: raw\n", "  format: raw\n"));
    const right = await env.run(["image", "pull", "disk", "--json"], {
      env: { QVM_CATALOG: catalog },
    });
    assert.equal(right.code, 0, right.stderr);
    assert.equal(JSON.parse(right.stdout).format, "raw");
  });
});

Deno.test("image rm is refused while a VM's root disk stands on the image", async () => {
  await withServer(async (server, env) => {
    const image = await tinyQcow2(env);
    server.files.set("/d/tiny.qcow2", { bytes: image });
    const url = `${server.base}/d/tiny.qcow2`;
    const entry = JSON.parse(
      await env.ok(["image", "pull", url, "--sha256", await sha256Of(image), "--json"]),
    );
    await env.ok(["add", "--name", "on-it", "--image", entry.path]);
    const ls = JSON.parse(await env.ok(["image", "ls", "--json"]));
    assert.deepEqual(ls.images[0].vms, ["on-it"]);
    const refused = await env.run(["image", "rm", url]);
    assert.equal(refused.code, 3);
    assert.equal(
      refused.stderr,
      `qvm: image ${entry.id} (tiny.qcow2) is the base of VM 'on-it': remove it first ` +
        "(qvm rm on-it --delete-storage)\n",
    );
    assert.ok(exists(entry.path), "nothing was removed");
    await env.ok(["rm", "on-it"]);
    await env.ok(["image", "rm", url]);
    assert.ok(!exists(entry.path));
  });
});

Deno.test("add takes the cloud flags: --port, --user, --ssh-key, --disk-size, --accel", async () => {
  await withEnv(async (env) => {
    await tinyQcow2(env);
    const keygen = await new Deno.Command("ssh-keygen", {
      args: ["-q", "-t", "ed25519", "-N", "", "-f", `${env.root}/k`],
    }).output();
    assert.ok(keygen.success);
    const key = (await Deno.readTextFile(`${env.root}/k.pub`)).trim();
    const added = await env.run([
      "add",
      "--name",
      "flags",
      "--image",
      `${env.root}/tiny.qcow2`,
      "--port",
      "auto:22",
      "--port",
      "8080:80",
      "--user",
      "dev",
      "--ssh-key",
      `${env.root}/k.pub`,
      "--disk-size",
      "2G",
      "--accel",
      "tcg",
    ]);
    assert.equal(added.code, 0, added.stderr);
    const db = JSON.parse(env.snapshot());
    const config = JSON.parse(db[0].config_data);
    assert.deepEqual(
      config.network.ports.map((p: { host: unknown; guest: number }) => [p.host, p.guest]),
      [
        ["auto", 22],
        [8080, 80],
      ],
    );
    assert.deepEqual(config.cloud_init, { user: "dev", ssh_authorized_keys: [key] });
    assert.equal(config.disk_size, "2G");
    assert.deepEqual(config.arguments, [{ accel: "tcg" }]);
    const dry = await env.ok(["start", "flags", "--dry-run"]);
    assert.match(dry, /-accel tcg /);
    assert.doesNotMatch(dry, /-accel kvm/);
    for (
      const [args, message] of [
        [["--accel", "hvf"], /^qvm: invalid --accel 'hvf': use kvm or tcg\n$/],
        [["--disk-size", "2G"], /^qvm: disk_size needs image: /],
        [["--image", `${env.root}/tiny.qcow2`, "--disk-size", "lots"], /invalid disk_size 'lots'/],
        [["--port", "22"], /invalid port forward '22'/],
      ] as const
    ) {
      const bad = await env.run(["add", "--name", "bad", ...args]);
      assert.equal(bad.code, 3, bad.stderr);
      assert.match(bad.stderr, message);
    }
  });
});

Deno.test("launch FILE pins the image's format, grows the root disk with --disk-size, and fills in a cloud VM", async () => {
  await withEnv(async (env) => {
    await tinyQcow2(env);
    // No guest boots from this image: wait only for QEMU's process, then look at what was made.
    const launched = await env.run([
      "launch",
      `${env.root}/tiny.qcow2`,
      "--accel",
      "tcg",
      "--disk-size",
      "1G",
      "--wait-for",
      "process",
      "--json",
    ]);
    assert.equal(launched.code, 0, launched.stderr);
    const out = JSON.parse(launched.stdout);
    assert.match(out.name, /^tiny-[0-9a-f]{4}$/);
    assert.deepEqual(out.image, { path: `${env.root}/tiny.qcow2`, format: "qcow2", id: null });
    assert.equal(out.tcg_fallback, false);
    const config = JSON.parse(JSON.parse(env.snapshot())[0].config_data);
    assert.equal(config.image_format, "qcow2");
    assert.equal(config.memory, "1G");
    assert.equal(config.cpu, 2);
    assert.equal(config.guest_agent, true);
    assert.deepEqual(config.cloud_init, {});
    assert.deepEqual(
      config.network.ports.map((p: { host: unknown; guest: number }) => [p.host, p.guest]),
      [["auto", 22]],
    );
    const overlay = `${env.dataDir}/disks/${out.id}/image-overlay.qcow2`;
    const info = JSON.parse(new TextDecoder().decode(
      (await new Deno.Command("qemu-img", {
        args: ["info", "-U", "--output=json", overlay],
        stdout: "piped",
      }).output()).stdout,
    ));
    assert.equal(info["virtual-size"], 1 << 30);
    assert.equal(info["backing-filename-format"], "qcow2");
    await env.ok(["stop", out.name, "--force"]);

    const small = await env.run([
      "launch",
      `${env.root}/tiny.qcow2`,
      "--disk-size",
      "32M",
      "--name",
      "small",
    ]);
    assert.equal(small.code, 3);
    assert.match(
      small.stderr,
      /^qvm: disk size 32M is smaller than the image \(67108864 bytes\): the root disk can only grow\n$/,
    );
    const missing = await env.run(["launch", `${env.root}/nope.qcow2`]);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /^qvm: image file '.*\/nope\.qcow2' not found\n$/);
    const names = JSON.parse(await env.ok(["ls", "--json"]));
    assert.deepEqual(
      names.map((v: { name: string }) => v.name),
      [out.name],
      "no VM was left by the refusals",
    );
  });
});

Deno.test("the pull's progress line: bytes, share, rate; drawn once per step, not per chunk", () => {
  assert.equal(
    pullProgressLine(
      {
        step: "download",
        name: "d.qcow2",
        received: 3 << 20,
        total: 12 << 20,
        resumedFrom: 1 << 20,
      },
      2000,
    ),
    "downloading d.qcow2: 3M of 12M (25%), resumed at 1M · 1M/s",
  );
  assert.equal(
    pullProgressLine({ step: "verify", name: "d.qcow2", algorithm: "sha512" }),
    "verifying d.qcow2 (sha512)",
  );
  const shown: string[] = [];
  const onPull = showPull({ show: (render) => shown.push(render()) });
  for (let i = 0; i <= 100; i++) {
    onPull({ step: "download", name: "d", received: i, total: 100, resumedFrom: 0 });
  }
  onPull({ step: "verify", name: "d", algorithm: "sha256" });
  assert.deepEqual(shown, ["downloading d: 0 of 100 (0%)", "verifying d (sha256)"]);
});

Deno.test("two pulls of one URL at once download it once; a local file refuses --sha256", async () => {
  await withServer(async (server, env) => {
    const image = await tinyQcow2(env);
    const sum = await sha256Of(image);
    server.files.set("/d/tiny.qcow2", { bytes: image });
    const url = `${server.base}/d/tiny.qcow2`;
    const [a, b] = await Promise.all([
      env.run(["image", "pull", url, "--sha256", sum, "--json"]),
      env.run(["image", "pull", url, "--sha256", sum, "--json"]),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.deepEqual(
      [JSON.parse(a.stdout).fetched, JSON.parse(b.stdout).fetched].sort(),
      [false, true],
    );
    assert.equal(server.requests.filter((r) => r.path === "/d/tiny.qcow2").length, 1);
    assert.equal(JSON.parse(await env.ok(["image", "ls", "--json"])).images.length, 1);
    const local = await env.run(["launch", `${env.root}/tiny.qcow2`, "--sha256", sum]);
    assert.equal(local.code, 3);
    assert.match(local.stderr, /--sha256 and --insecure-no-checksum are for downloads/);
  });
});
