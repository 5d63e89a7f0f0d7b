/**
 * QEMU's run state in one round trip, for the reads that must stay cheap (`ls`, `status`, the
 * stop sequence): no QMP client, no retry, a hard time bound.
 */
import { after } from "../timers.ts";

/** Both requests of `runState` in one write: QEMU handles them in order once it serves us. */
const RUN_STATE_REQUEST = new TextEncoder().encode(
  '{"execute":"qmp_capabilities"}\n{"execute":"query-status","id":"qvm-run-state"}\n',
);

/**
 * QEMU's run state (`running`, `paused`, `shutdown`, ...) from `query-status` on `socket`, or
 * undefined if it does not answer within `timeoutMs` (no retry: a missing socket is an answer).
 * The capabilities handshake and the query go in one write, before the greeting is read: one
 * round trip to a busy QEMU instead of three (`ls` asks every running VM this).
 */
export async function runState(socket: string, timeoutMs: number): Promise<string | undefined> {
  let conn: Deno.UnixConn | undefined;
  let done = false;
  let timedOut = false;
  after(timeoutMs, () => {
    if (done) return;
    timedOut = true;
    try {
      conn?.close();
    } catch { /* already closed */ }
  });
  try {
    conn = await Deno.connect({ transport: "unix", path: socket });
    if (timedOut) return undefined;
    for (let sent = 0; sent < RUN_STATE_REQUEST.length;) {
      sent += await conn.write(RUN_STATE_REQUEST.subarray(sent));
    }
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(4096);
    let pending = "";
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return undefined;
      pending += decoder.decode(buffer.subarray(0, n), { stream: true });
      for (let end = pending.indexOf("\n"); end !== -1; end = pending.indexOf("\n")) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 1);
        if (!line.includes('"qvm-run-state"')) continue; // the greeting, the handshake, events
        const status = JSON.parse(line)?.return?.status;
        return typeof status === "string" ? status : undefined;
      }
    }
  } catch {
    return undefined;
  } finally {
    done = true;
    if (!timedOut) {
      try {
        conn?.close();
      } catch { /* already closed */ }
    }
  }
}
