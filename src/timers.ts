/**
 * Timers that cost no start-up. Deno builds `setTimeout` on its Node-compatible timer module,
 * which it loads (with `async_hooks` and `util.inspect`) on a process's first call: ~3.7 ms here,
 * more than the rest of `qvm status` of a running VM spends on its own work. `AbortSignal.timeout`
 * runs on the web platform's timers and costs nothing measurable, but cannot be cancelled: the
 * timer stays pending until it fires (qvm's processes end with `Deno.exit`, which does not wait
 * for it), so `after`'s callback must check whether it still has anything to do.
 */

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => after(ms, resolve));
}

/** Calls `fn` once, `ms` milliseconds from now. */
export function after(ms: number, fn: () => void): void {
  AbortSignal.timeout(Math.max(0, Math.ceil(ms))).addEventListener("abort", () => fn(), {
    once: true,
  });
}
