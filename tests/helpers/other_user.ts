/**
 * Running qvm as another user (`nobody`) from a checkout that user may not read (a clone under
 * /root, or in any 0700 folder): what it runs (Deno, main.ts, src/, the YAML package) is copied
 * once per test process into a temporary folder everyone may read, removed when the process ends.
 */
import { join } from "node:path";

/** Where the readable copy is: its Deno binary and its `main.ts`. */
export interface ReadableQvm {
  deno: string;
  main: string;
}

/** What `deno run main.ts` reads from the checkout. */
const PARTS = ["main.ts", "deno.json", "deno.lock", "package.json", "src", "node_modules/yaml"];

let prepared: Promise<ReadableQvm> | undefined;

/** The readable copy of qvm (made on first call). */
export function readableQvm(): Promise<ReadableQvm> {
  prepared ??= prepare();
  return prepared;
}

async function copyTree(from: string, to: string): Promise<void> {
  const info = await Deno.stat(from);
  if (!info.isDirectory) {
    await Deno.copyFile(from, to);
    await Deno.chmod(to, 0o644);
    return;
  }
  await Deno.mkdir(to, { recursive: true });
  await Deno.chmod(to, 0o755);
  for await (const entry of Deno.readDir(from)) {
    await copyTree(join(from, entry.name), join(to, entry.name));
  }
}

async function prepare(): Promise<ReadableQvm> {
  const root = await Deno.makeTempDir({ prefix: "qvm-other-user-" });
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(root, { recursive: true });
    } catch { /* gone */ }
  });
  await Deno.chmod(root, 0o755);
  const repo = new URL("../../", import.meta.url).pathname;
  for (const part of PARTS) {
    await Deno.mkdir(join(root, part, ".."), { recursive: true });
    await copyTree(join(repo, part), join(root, part));
  }
  await Deno.chmod(join(root, "node_modules"), 0o755);
  const deno = join(root, "deno");
  try {
    await Deno.link(Deno.execPath(), deno); // the same file, when on the same file system
  } catch {
    await Deno.copyFile(Deno.execPath(), deno);
  }
  await Deno.chmod(deno, 0o755);
  return { deno, main: join(root, "main.ts") };
}
