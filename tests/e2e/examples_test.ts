/**
 * Every config in examples/ and in the README runs on the test guest: each is added and started
 * with --dry-run, two boot for real. The examples find the guest at examples/guest (a link).
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { ensureGuest, GUEST_READY_MARKER } from "../fixture/mod.ts";
import { WAIT_READY } from "../helpers/guest.ts";
import { type QvmEnv, withEnv } from "../helpers/qvm.ts";

const EXAMPLES = new URL("../../examples/", import.meta.url).pathname;
const README = new URL("../../README.md", import.meta.url).pathname;
const CONFIGS_PAGE = new URL("../../docs/configs.md", import.meta.url).pathname;

/** How each example is used: the files `add` merges, and what its argv must hold. */
const USES: { files: string[]; holds: string[] }[] = [
  { files: ["minimal.yaml"], holds: ["-kernel", "-initrd"] },
  {
    files: ["minimal.yaml", "network.yaml"],
    holds: ["user,id=n0,hostfwd=tcp:127.0.0.1:10022-:22,hostfwd=tcp:127.0.0.1:10080-:80"],
  },
  { files: ["minimal.yaml", "disks.yaml"], holds: ["-virtfs"] },
  { files: ["maqet.yaml"], holds: ["type=pc,usb=off", "chardev:qvm-serial"] },
];

/** A copy of examples/ in the env, with `guest` linked to the cached test guest. */
async function examplesIn(env: QvmEnv): Promise<string> {
  const guest = await ensureGuest();
  const dir = join(env.root, "examples");
  await Deno.mkdir(join(dir, "share"), { recursive: true });
  for await (const entry of Deno.readDir(EXAMPLES)) {
    if (entry.name.endsWith(".yaml")) {
      await Deno.copyFile(join(EXAMPLES, entry.name), join(dir, entry.name));
    }
  }
  await Deno.symlink(dirname(guest.kernel), join(dir, "guest"));
  return dir;
}

/** The ```yaml blocks of the configs page before its first subsection: the configs that boot the test guest. */
function readmeConfigs(): string[] {
  const text = Deno.readTextFileSync(CONFIGS_PAGE);
  const section = text.slice(0, text.indexOf("\n## "));
  return [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
}

Deno.test("every example is used by a test below", async () => {
  const names: string[] = [];
  for await (const entry of Deno.readDir(EXAMPLES)) {
    if (entry.name.endsWith(".yaml")) names.push(entry.name);
  }
  const used = new Set(USES.flatMap((use) => use.files));
  assert.deepEqual(names.filter((name) => !used.has(name)), []);
});

Deno.test("every example is added and started with --dry-run", async () => {
  await withEnv(async (env) => {
    const dir = await examplesIn(env);
    for (const [i, use] of USES.entries()) {
      const files = use.files.map((name) => join(dir, name));
      await env.ok(["add", ...files, "--name", `ex${i}`]);
      const argv: string[] = JSON.parse(await env.ok(["start", `ex${i}`, "--dry-run", "--json"]))
        .argv;
      for (const part of use.holds) {
        assert.ok(argv.some((arg) => arg.includes(part)), `${use.files}: ${part}`);
      }
      for (const arg of argv) assert.ok(!arg.includes("./"), `${use.files}: ${arg}`);
    }
  });
});

Deno.test({
  name: "the minimal and the maqet-style examples boot the test guest",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await withEnv(async (env) => {
      const dir = await examplesIn(env);
      for (const name of ["minimal.yaml", "maqet.yaml"]) {
        const vm = name.replace(".yaml", "");
        await env.ok(["add", join(dir, name), "--name", vm]);
        await env.ok(["start", vm, ...WAIT_READY]);
        assert.match(await env.ok(["logs", vm]), new RegExp(GUEST_READY_MARKER));
        await env.ok(["stop", vm, "--force"]);
      }
    });
  },
});

Deno.test("the configs page's configs are the example files, word for word", async () => {
  const configs = readmeConfigs();
  assert.ok(configs.length > 0);
  for (const config of configs) {
    const named = /^# (examples\/[\w.-]+\.yaml)\n/.exec(config);
    assert.ok(named, `a README config names its example file first:\n${config}`);
    const file = await Deno.readTextFile(new URL(`../../${named[1]}`, import.meta.url));
    assert.equal(config.slice(named[0].length), file);
  }
});

Deno.test("the README and the docs wait for text the test guest prints", () => {
  const text = [README, CONFIGS_PAGE, new URL("../../docs/commands.md", import.meta.url).pathname]
    .map((file) => Deno.readTextFileSync(file)).join("\n");
  const waits = [...text.matchAll(/--wait-for '?serial:([^'\s]+)/g)].map((m) => m[1]);
  assert.ok(waits.length > 0);
  for (const wait of waits) assert.equal(wait, GUEST_READY_MARKER);
});
