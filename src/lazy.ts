/**
 * Modules qvm loads only when a command needs them, and the one way to load them.
 *
 * Deno reads, before running anything, the whole module graph behind every literal
 * `import("./x.ts")`, so a literal dynamic import costs start-up even when it never runs: with
 * one in `status` (the cloud module, which reaches the config parser), `qvm status` loaded 45
 * modules instead of 20. `lazyImport` builds the URL at run time, so Deno sees no edge. The
 * single-file build (`src/dist/bundle.ts`) makes every path in `LAZY_MODULES` (and every command)
 * an entry of its own and installs a loader for them under `LAZY_IMPORTER`.
 *
 * The loaders themselves (`cloudModule`, `qmpModule`, ...) sit beside the modules they load, in
 * each folder's `lazy.ts` (config's, `configModule`, with the commands in `cli/_lazy.ts`):
 * importing one shows which layer a module reaches, and this root helper imports nothing of the
 * layers above it, not even a type. A loader on the start-up path of `status` or `ls` sits with the
 * module that calls it instead (`cloudStatusModule` in `cli/status.ts`, `freezeModule` in
 * `vm/observe.ts`), so that those commands load no module for it.
 */

/** Where the single-file build puts its loader of a module by repository path. */
export const LAZY_IMPORTER = Symbol.for("qvm.import");

/** Every module loaded through `lazyImport` besides the commands, by path from the repository root. */
export const LAZY_MODULES = [
  "src/cloud/mod.ts",
  "src/cloud/status.ts",
  "src/cloud/agent.ts",
  "src/cloud/image.ts",
  "src/config/mod.ts",
  "src/qemu/qmp.ts",
  "src/progress.ts",
  "src/cli/_progress.ts",
  "src/cli/_help.ts",
  "src/vm/freeze.ts",
] as const;

/** A path `lazyImport` accepts: a listed module or a command's module. */
export type LazyPath = typeof LAZY_MODULES[number] | `src/cli/${string}.ts`;

type Importer = (path: string) => Promise<unknown>;

/** Imports `path` (from the repository root) when called; `T` is the module's type. */
export function lazyImport<T>(path: LazyPath): Promise<T> {
  const hook = (globalThis as Record<symbol, Importer | undefined>)[LAZY_IMPORTER];
  return (hook ? hook(path) : import(new URL(`../${path}`, import.meta.url).href)) as Promise<T>;
}
