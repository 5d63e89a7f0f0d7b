/**
 * The QMP client, loaded when a command talks QMP beyond one run-state read (see `src/lazy.ts`).
 * Importing this file loads nothing more.
 */
import { lazyImport } from "../lazy.ts";

/** The QMP client. */
export const qmpModule = () => lazyImport<typeof import("./qmp.ts")>("src/qemu/qmp.ts");
