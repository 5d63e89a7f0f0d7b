/**
 * The config module, loaded when a command needs it (see `src/lazy.ts`): it brings the YAML
 * parser, which `status`, `ls` and `info` never load. Its loader lives here, with the commands
 * that use it, because other folders reach config only through `config/mod.ts`.
 */
import { lazyImport } from "../lazy.ts";

/** Config loading, merging and validation (and with it the YAML parser). */
export const configModule = () =>
  lazyImport<typeof import("../config/mod.ts")>("src/config/mod.ts");
