/**
 * What the `vm/` layer needs from its caller: the folders and the state store. The CLI's
 * `Context` satisfies it; nothing under `vm/` depends on the CLI.
 */
import type { Dirs, StateStore } from "../state/mod.ts";

/** The folders and the store a VM operation works with. */
export interface VmEnv {
  readonly dirs: Dirs;
  readonly store: StateStore;
  /** Where non-fatal warnings go (stderr in the CLI); dropped when absent. */
  warn?(message: string): void;
}

/** The longest wait any qvm command accepts, in seconds (one day). */
export const MAX_WAIT_S = 86_400;

/**
 * One deadline for a whole command: the lock wait and every step after it share it, so
 * `stop --timeout 10` ends within about ten seconds however long the lock was held.
 */
export class Deadline {
  readonly at: number;

  private constructor(at: number) {
    this.at = at;
  }

  /** A deadline `ms` from now (clamped to qvm's longest wait). */
  static in(ms: number): Deadline {
    return new Deadline(Date.now() + Math.min(Math.max(ms, 0), MAX_WAIT_S * 1000));
  }

  /** Milliseconds left, never negative. */
  remainingMs(): number {
    return Math.max(this.at - Date.now(), 0);
  }

  /** True once the deadline has passed. */
  get expired(): boolean {
    return Date.now() >= this.at;
  }
}
