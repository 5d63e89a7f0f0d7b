/**
 * Where the serial log stood when the current run of a VM's QEMU began. The log spans every run
 * (QEMU appends to it), so `wait --for serial:TEXT` reads from this offset to see only what this
 * run printed, however late it is called. Written by `start` in the runtime dir, removed with the
 * VM's other runtime files when it stops.
 */
import type { VmPaths } from "../vm_files.ts";

/** Records `offset` as the start of this run's serial output (replacing, never following, a link). */
export function recordSerialStart(paths: VmPaths, offset: number): void {
  const temp = `${paths.bootFile}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  Deno.writeTextFileSync(temp, `${offset}\n`, { mode: 0o600, createNew: true });
  Deno.renameSync(temp, paths.bootFile);
}

/** The recorded start of this run's serial output, or undefined when none was recorded. */
export function serialStart(paths: VmPaths): number | undefined {
  try {
    const info = Deno.lstatSync(paths.bootFile);
    if (!info.isFile) return undefined;
    const n = Number(Deno.readTextFileSync(paths.bootFile).trim());
    return Number.isInteger(n) && n >= 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Where the serial log ends now (0 when there is none): where a run that begins now starts. */
export function serialLogEnd(paths: VmPaths): number {
  try {
    return Deno.statSync(paths.serialLog).size;
  } catch {
    return 0;
  }
}
