/**
 * The vm modules loaded when a command needs them (see `src/lazy.ts`). Importing this file loads
 * none of them.
 */
import { lazyImport } from "../lazy.ts";

/** Guests frozen for a live snapshot: the freeze, and the thaw of one an interrupted qvm left. */
export const freezeModule = () => lazyImport<typeof import("./freeze.ts")>("src/vm/freeze.ts");
