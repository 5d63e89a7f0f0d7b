/**
 * The quick routes of the two commands scripts and prompts run most, `status VM` and
 * `ls --json`, for qvm's built forms (`src/dist/bundle.ts` runs them before loading the full
 * command). A quick route answers only what it can settle by reading: the folders are safe, the
 * database has this qvm's schema (opened read-only, nothing migrated or created), and every VM it
 * shows is either settled (claims no process) or passes a glance at its QEMU (`ls`). Then it
 * prints what the full command prints, byte for byte. Anything else (another flag, a VM to look
 * at over QMP or to correct, an error to report) returns undefined, and the full command runs as
 * if the quick route had not been tried: it has written nothing.
 */
import { OutputClosed, writeOut } from "./context.ts";
import { statusLine } from "./status.ts";
import { checkDir, databasePath, resolveDirs, StateStore } from "../state/mod.ts";
import { settledStatus } from "../vm/observe.ts";
import { type Output, quickListJson, writeOutput } from "../vm/list.ts";
import type { VmEnv } from "../vm/env.ts";

/** An invocation a quick route takes: `status VM` or `ls --json`, and the folder flags. */
export interface QuickCall {
  command: "status" | "ls";
  /** The VM of `status`. */
  vm?: string;
  dataDir?: string;
  runtimeDir?: string;
}

const FOLDER_FLAGS: Readonly<Record<string, "dataDir" | "runtimeDir">> = {
  "--data-dir": "dataDir",
  "--runtime-dir": "runtimeDir",
};

/**
 * `argv` as a quick call, or undefined for any other form: only `status VM`, `ls --json` and
 * `ls --format json`, with `--data-dir`/`--runtime-dir` (each at most once, `--flag value` or
 * `--flag=value`) before or after; no other flag, no `--`, nothing else.
 */
export function quickCall(argv: readonly string[]): QuickCall | undefined {
  const words: string[] = [];
  const folders: Partial<Record<"dataDir" | "runtimeDir", string>> = {};
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("-")) {
      words.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const key = FOLDER_FLAGS[eq === -1 ? arg : arg.slice(0, eq)];
    if (key !== undefined) {
      const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
      if (!value || value.startsWith("-") || folders[key] !== undefined) return undefined;
      folders[key] = value;
      continue;
    }
    const format = arg === "--format" && argv[i + 1] === "json";
    if (json || !(format || arg === "--json" || arg === "--format=json")) return undefined;
    json = true;
    if (format) i++;
  }
  const [command, vm, ...more] = words;
  if (command === "status" && vm !== undefined && more.length === 0 && !json) {
    return { command, vm, ...folders };
  }
  if (command === "ls" && vm === undefined && json) return { command, ...folders };
  return undefined;
}

/**
 * Runs `argv` by its quick route: the exit code when it answered (the output written), undefined
 * when the full command must run instead (nothing written).
 */
export async function quick(argv: readonly string[]): Promise<number | undefined> {
  const call = quickCall(argv);
  if (call === undefined) return undefined;
  let output: Output | undefined;
  let store: StateStore | undefined;
  try {
    const dirs = resolveDirs(call);
    // An unsafe folder throws (the full command reports it); a missing data dir is made there.
    if (!checkDir(dirs.dataDir)) return undefined;
    checkDir(dirs.runtimeDir);
    store = StateStore.peek(databasePath(dirs.dataDir));
    if (store === undefined) return undefined;
    const env: VmEnv = { dirs, store };
    output = call.command === "status" ? quickStatus(env, call.vm!) : await quickListJson(env);
  } catch {
    return undefined;
  } finally {
    store?.close();
  }
  if (output === undefined) return undefined;
  try {
    writeOutput(output, writeOut);
  } catch (err) {
    if (err instanceof OutputClosed) return 0;
    // Part of the output may be out: the full command would print it again.
    console.error(`qvm: ${(err as Error)?.message ?? err}`);
    return 1;
  }
  return 0;
}

/** `status VM`'s line for a settled VM, or undefined when `status` must look (or has no VM). */
function quickStatus(env: VmEnv, idOrName: string): Output | undefined {
  const vm = env.store.brief(idOrName);
  if (vm === undefined) return undefined;
  const status = settledStatus(env, vm);
  if (status === undefined) return undefined;
  return { head: new TextEncoder().encode(`${statusLine(vm, status, false)}\n`), rest: 0 };
}
