/** `qvm console`: an interactive serial console; Ctrl-] detaches (the VM keeps running). */
import type { Context } from "./context.ts";
import type { CommandSpec, ParsedArgs } from "./spec.ts";
import { QvmError } from "../errors.ts";
import { isOurQemu } from "../qemu/process.ts";
import { vmPaths } from "../vm/paths.ts";

/** The byte that detaches: Ctrl-] (0x1d), as telnet does. */
export const DETACH_BYTE = 0x1d;

/** The command's arguments and flags. */
export const spec: CommandSpec = {
  name: "console",
  summary: "attach to a VM's serial console (detach with Ctrl-])",
  description:
    "Keys go to the guest's serial port and its output comes back. Ctrl-] detaches and leaves the\n" +
    "VM running. One console at a time; the output is also in 'qvm logs'.",
  positionals: [{ name: "VM", description: "id or name", complete: "vm" }],
  options: {},
  examples: ["qvm console web1"],
};

/** Connects stdin/stdout to the serial socket until detach, EOF, or the VM stopping. */
export async function run(ctx: Context, args: ParsedArgs): Promise<number> {
  const vm = ctx.store.require(args.positionals[0]);
  if (!isOurQemu(vm.pid, vm.id)) throw new QvmError(`VM '${vm.name}' is not running`);
  const path = vmPaths(ctx.dirs, vm.id).serialSocket;
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (err) {
    throw new QvmError(`cannot attach to ${vm.name}'s serial console: ${(err as Error).message}`);
  }
  const tty = Deno.stdin.isTerminal();
  if (tty) {
    Deno.stdin.setRaw(true);
    ctx.note(`connected to ${vm.name}'s serial console; Ctrl-] detaches\r`);
  }
  const fromGuest = conn.readable.pipeTo(Deno.stdout.writable, { preventClose: true }).catch(
    () => {},
  );
  const writer = conn.writable.getWriter();
  const buf = new Uint8Array(1024);
  try {
    while (true) {
      const n = await Promise.race([Deno.stdin.read(buf), fromGuest.then(() => null)]);
      if (n === null) break;
      const chunk = buf.subarray(0, n);
      const detach = chunk.indexOf(DETACH_BYTE);
      if (detach !== -1) {
        if (detach > 0) await writer.write(chunk.slice(0, detach));
        break;
      }
      await writer.write(chunk.slice());
    }
  } finally {
    if (tty) Deno.stdin.setRaw(false);
    try {
      conn.close();
    } catch { /* closed by the guest side */ }
    await fromGuest;
  }
  if (tty) ctx.note("\ndetached");
  return 0;
}
