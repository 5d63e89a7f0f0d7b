/**
 * Ctrl-C and SIGTERM while qvm does work it must finish or undo before it ends (copying a clone's
 * disks, an offline snapshot across several drives): the signal is caught, the work sees it
 * through an AbortSignal, undoes what it began, and the command ends as an interrupted one does.
 */
import { QvmError } from "./errors.ts";

let held = 0;

/** True while some work has Ctrl-C and SIGTERM caught (a progress line then leaves the exit to it). */
export function signalsHeld(): boolean {
  return held > 0;
}

/** A command interrupted by Ctrl-C or SIGTERM after it undid what it had begun: exit 128 + signal. */
export class InterruptedError extends QvmError {
  override name = "InterruptedError";
  constructor(signal: "SIGINT" | "SIGTERM", message: string) {
    super(message);
    this.exitCode = signal === "SIGINT" ? 130 : 143;
  }
}

/**
 * Runs `work` with Ctrl-C and SIGTERM caught: the AbortSignal it gets aborts when one comes (pass
 * it to child processes that may be killed, check it between steps). Once it has aborted, an error
 * `work` ends with gives way to an InterruptedError saying `undone` (a function: asked then, for
 * undoing that may fail), which `work` must have made true (in its own `catch` or `finally`);
 * work that finishes all the same returns as usual.
 */
export async function withSignalsHeld<T>(
  undone: string | (() => string),
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  let caught: "SIGINT" | "SIGTERM" | undefined;
  const listeners = (["SIGINT", "SIGTERM"] as const).map((name) => {
    const listener = () => {
      caught ??= name;
      // A function is asked once the work has ended (below); the reason then only says "why".
      const said = typeof undone === "string" ? `interrupted: ${undone}` : "interrupted";
      controller.abort(new InterruptedError(name, said));
    };
    try {
      Deno.addSignalListener(name, listener);
    } catch { /* no signals here */ }
    return [name, listener] as const;
  });
  held++;
  try {
    return await work(controller.signal); // finished after all: what it did stands
  } catch (err) {
    if (caught && typeof undone === "function") {
      throw new InterruptedError(caught, `interrupted: ${undone()}`);
    }
    if (caught) throw controller.signal.reason;
    throw err;
  } finally {
    held--;
    for (const [name, listener] of listeners) {
      try {
        Deno.removeSignalListener(name, listener);
      } catch { /* never added */ }
    }
  }
}
