/**
 * What a test needs from the machine. A test that cannot run here is ignored (Deno reports it as
 * ignored, not passed), and the reason is said once on stderr: never an early `return`, which
 * reports a pass for a test that checked nothing.
 */

/** True when the tests run as root (tmpfs mounts, chown, a private libvirtd need it). */
export const IS_ROOT = Deno.uid() === 0;

const said = new Set<string>();

/** `ignore` for a test that cannot run here: true when `why` is a reason; says it once. */
export function ignoreBecause(why: string | undefined): boolean {
  if (why === undefined) return false;
  if (!said.has(why)) console.error(`ignored: ${why}`);
  said.add(why);
  return true;
}

/** `ignore` for a test that needs root for `what`; says so once when not root. */
export function needsRoot(what: string): boolean {
  return ignoreBecause(IS_ROOT ? undefined : `${what} needs root`);
}
