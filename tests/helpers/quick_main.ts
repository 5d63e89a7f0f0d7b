/**
 * Runs argv by qvm's quick route alone (src/cli/quick.ts), as the built forms do first: exits
 * with its code, or with `DECLINED` when the route leaves the command to the full one.
 */
import { quick } from "../../src/cli/quick.ts";

/** The exit code of a run the quick route declined (no qvm command exits with it). */
export const DECLINED = 99;

if (import.meta.main) Deno.exit((await quick(Deno.args)) ?? DECLINED);
