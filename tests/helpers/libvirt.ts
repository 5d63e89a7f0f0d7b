/** Tests against a private libvirtd: a qvm env and a libvirtd started for one test, both cleaned up. */
import { type Libvirt, libvirtMissing, sshdMissing, startLibvirt } from "../fixture/libvirt.ts";
import { ignoreBecause } from "./needs.ts";
import { type QvmEnv, withEnv } from "./qvm.ts";

/** Why no libvirtd can run here (said once), or undefined. */
export const LIBVIRT_MISSING = libvirtMissing();

/** Runs `fn` with a fresh qvm env and a private libvirtd; stops the libvirtd, then cleans the env. */
export async function withLibvirt(fn: (env: QvmEnv, lv: Libvirt) => Promise<void>): Promise<void> {
  await withEnv(async (env) => {
    const lv = await startLibvirt();
    try {
      await fn(env, lv);
    } finally {
      await lv.stop();
    }
  });
}

/**
 * A test that needs a private libvirtd (and an sshd, `over: "ssh"`): ignored, with the reason,
 * where they cannot run; libvirtd and its children outlive single steps, so the sanitizers are off.
 */
export function libvirtTest(
  name: string,
  fn: (env: QvmEnv, lv: Libvirt) => Promise<void>,
  options: { over?: "ssh" } = {},
): void {
  const why = LIBVIRT_MISSING ?? (options.over === "ssh" ? sshdMissing() : undefined);
  const what = options.over === "ssh" ? "libvirt over ssh" : "libvirt";
  Deno.test({
    name,
    ignore: ignoreBecause(why && `${what} tests: ${why}`),
    sanitizeResources: false,
    sanitizeOps: false,
    fn: () => withLibvirt(fn),
  });
}
