/** Waiting in tests: for a condition, never for a fixed time that stands in for one. */

/** Resolves after `ms` milliseconds (for pacing a loop, not for waiting on something to happen). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Waits until `check` is true or `timeout` ms (default 10 s) pass, checking every `interval` ms
 * (default 50); returns the last result, so a test asserts on it with its own message.
 */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  options: { timeout?: number; interval?: number } = {},
): Promise<boolean> {
  const deadline = Date.now() + (options.timeout ?? 10_000);
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(options.interval ?? 50);
  }
  return await check();
}

/**
 * True if a client is connected to the unix socket at `path`: the kernel lists the accepted end
 * of each connection under the listener's path, in state 03 (connected), in /proc/net/unix.
 */
export function socketHasClient(path: string): boolean {
  return Deno.readTextFileSync("/proc/net/unix").split("\n").slice(1).some((line) => {
    const fields = line.trim().split(/\s+/);
    return fields[5] === "03" && fields[7] === path;
  });
}

/** True if process `pid` holds a flock on the file at `path` now (as /proc/locks lists it). */
export function holdsLock(pid: number, path: string): boolean {
  let ino: number | null;
  try {
    ino = Deno.statSync(path).ino;
  } catch {
    return false;
  }
  return Deno.readTextFileSync("/proc/locks").split("\n").some((line) => {
    // "1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF"; waiters' lines carry "->".
    const fields = line.trim().split(/\s+/);
    return fields[1] === "FLOCK" && Number(fields[4]) === pid &&
      Number(fields[5]?.split(":")[2]) === ino;
  });
}
