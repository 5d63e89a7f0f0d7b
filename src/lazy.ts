/**
 * Modules qvm loads only when a command needs them, and the one way to load them.
 *
 * Deno reads, before running anything, the whole module graph behind every literal
 * `import("./x.ts")`, so a literal dynamic import costs start-up even when it never runs: with
 * one in `status` (the cloud module, which reaches the config parser), `qvm status` loaded 45
 * modules instead of 20. `lazyImport` builds the URL at run time, so Deno sees no edge. The
 * single-file build (`src/dist/bundle.ts`) makes every path in `LAZY_MODULES` (and every command)
 * an entry of its own and installs a loader for them under `LAZY_IMPORTER`.
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
  "src/cli/_progress.ts",
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

/** The cloud module (ports, cloud-init seed, ssh, guest agent wiring). */
export const cloudModule = () => lazyImport<typeof import("./cloud/mod.ts")>("src/cloud/mod.ts");
/** What `status --json` shows of a cloud VM (without the rest of the cloud module). */
export const cloudStatusModule = () =>
  lazyImport<typeof import("./cloud/status.ts")>("src/cloud/status.ts");
/** The guest agent client. */
export const agentModule = () =>
  lazyImport<typeof import("./cloud/agent.ts")>("src/cloud/agent.ts");
/** Base images and their overlays. */
export const imageModule = () =>
  lazyImport<typeof import("./cloud/image.ts")>("src/cloud/image.ts");
/** Config loading, merging and validation (and with it the YAML parser). */
export const configModule = () => lazyImport<typeof import("./config/mod.ts")>("src/config/mod.ts");
/** The QMP client. */
export const qmpModule = () => lazyImport<typeof import("./qemu/qmp.ts")>("src/qemu/qmp.ts");
/** Guests frozen for a live snapshot: the freeze, and the thaw of one an interrupted qvm left. */
export const freezeModule = () => lazyImport<typeof import("./vm/freeze.ts")>("src/vm/freeze.ts");
