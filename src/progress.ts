/**
 * One status line on the terminal, redrawn in place while a command waits (`start --wait-for`,
 * `stop`, `restart`, `wait`, live snapshots, disk creation, downloads, copies, `storage verify`).
 * It exists only when both stdout and stderr are terminals and neither `--json` nor `--quiet` was
 * given; otherwise every call is a no-op, so piped output and scripts see exactly what they saw
 * before. Plain ANSI escape codes (no terminal library): nothing to load, and only the commands
 * that wait import this file. It knows no command or VM: what a line says is its caller's.
 */
import { signalsHeld } from "./signals.ts";

/** What decides whether a line may be drawn: the command's `--json`. */
interface Output {
  json: boolean;
}

const ESC = String.fromCharCode(27);
const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/** How often the line is redrawn (elapsed time, time left, the guest's last serial line). */
const TICK_MS = 200;
const encoder = new TextEncoder();

/** True when a progress line may be drawn: both outputs are terminals, no --json, no --quiet. */
export function progressAllowed(ctx: Output, quiet: boolean): boolean {
  return !ctx.json && !quiet && Deno.stdout.isTerminal() && Deno.stderr.isTerminal();
}

/** Seconds as people read them on a progress line: `0.4s`, `12s`, `2m05s`. */
export function formatSeconds(ms: number): string {
  const s = Math.max(ms, 0) / 1000;
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.floor(s)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}

/** `text` without escape sequences and control characters, so a guest's output cannot move the cursor. */
export function printable(text: string): string {
  return text
    .replace(new RegExp(`${ESC}\\[[0-?]*[ -/]*[@-~]`, "g"), "")
    .replace(new RegExp(`${ESC}[@-_]`, "g"), "")
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, "")
    .trim();
}

/** The last non-empty line written to `file` after byte `from` (empty if none), made printable. */
export function lastLineAfter(file: string, from: number): string {
  let handle: Deno.FsFile | undefined;
  try {
    handle = Deno.openSync(file, { read: true });
    const size = handle.statSync().size;
    if (size <= from) return "";
    const start = Math.max(from, size - 4096);
    handle.seekSync(start, Deno.SeekMode.Start);
    const buf = new Uint8Array(size - start);
    let got = 0;
    while (got < buf.length) {
      const n = handle.readSync(buf.subarray(got));
      if (n === null || n === 0) break;
      got += n;
    }
    const lines = new TextDecoder().decode(buf.subarray(0, got)).split(/\r?\n|\r/);
    for (let i = lines.length - 1; i >= 0; i--) {
      const line = printable(lines[i]);
      if (line !== "") return line;
    }
    return "";
  } catch {
    return "";
  } finally {
    handle?.close();
  }
}

/** A live status line on stderr; inert when progress is not allowed. */
export class Progress {
  readonly enabled: boolean;
  readonly #color: boolean;
  #render?: () => string;
  #timer?: ReturnType<typeof setInterval>;
  #frame = 0;
  #drawn = false;
  #listening = false;
  #note?: () => string | undefined;
  readonly #interrupts: boolean;

  /**
   * A progress line for this command run (`quiet`: the command's --quiet flag). While it shows,
   * Ctrl-C clears it and exits 130, unless `interrupts` is false (the command handles Ctrl-C
   * itself, to undo its work, and calls `done`).
   */
  constructor(
    ctx: Output,
    options: { quiet?: boolean; interrupts?: boolean } = {},
  ) {
    this.enabled = progressAllowed(ctx, options.quiet === true);
    this.#color = this.enabled && !Deno.env.get("NO_COLOR");
    this.#interrupts = options.interrupts !== false;
  }

  /** Shows `render()` now and redraws it every tick until `show` is called again or `done`. */
  show(render: () => string): void {
    if (!this.enabled) return;
    this.#render = render;
    this.#draw();
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#draw(), TICK_MS);
      if (this.#interrupts) this.#listen();
    }
  }

  /**
   * Until `done`, Ctrl-C prints `note()` (when it gives a line) on stderr before the command ends
   * with 130, whether a line is drawn or not: what an interrupted wait leaves behind.
   */
  onInterrupt(note: () => string | undefined): void {
    this.#note = note;
    this.#listen();
  }

  #listen(): void {
    if (this.#listening) return;
    try {
      Deno.addSignalListener("SIGINT", this.#interrupted);
      this.#listening = true;
    } catch { /* no signals here: Ctrl-C then leaves the line as it was */ }
  }

  /**
   * Ctrl-C: clear the line, say what was left, then end as an interrupted command does (128 +
   * SIGINT), unless the command has Ctrl-C caught to undo its work first (it then ends so itself).
   */
  #interrupted = () => {
    const note = this.#note?.();
    this.done();
    if (signalsHeld()) return;
    if (note) this.#write(`${note}\n`);
    Deno.exit(130);
  };

  /** Clears the line (before the command prints its result or an error). */
  done(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    if (this.#listening) {
      try {
        Deno.removeSignalListener("SIGINT", this.#interrupted);
      } catch { /* already removed */ }
    }
    this.#listening = false;
    this.#note = undefined;
    this.#timer = undefined;
    this.#render = undefined;
    if (this.#drawn) this.#write(`\r${ESC}[2K`);
    this.#drawn = false;
  }

  /** `text` dimmed when colours are allowed (NO_COLOR unset). */
  dim(text: string): string {
    return this.#color ? `${ESC}[2m${text}${ESC}[22m` : text;
  }

  #draw(): void {
    if (!this.#render) return;
    let text: string;
    try {
      text = this.#render();
    } catch {
      return;
    }
    const spin = SPINNER[this.#frame++ % SPINNER.length];
    const width = terminalWidth();
    const visible = (s: string) => s.replace(new RegExp(`${ESC}\\[[0-9;]*m`, "g"), "");
    let line = `${this.#color ? `${ESC}[36m${spin}${ESC}[39m` : spin} ${text}`;
    if (visible(line).length > width - 1) line = clip(line, width - 1);
    this.#write(`\r${ESC}[2K${line}`);
    this.#drawn = true;
  }

  #write(text: string): void {
    try {
      Deno.stderr.writeSync(encoder.encode(text));
    } catch { /* the terminal went away: progress is not worth failing for */ }
  }
}

/** The terminal's width; a terminal that reports none (e.g. under `script`) counts as 80. */
function terminalWidth(): number {
  let columns = 0;
  try {
    columns = Deno.consoleSize().columns;
  } catch { /* not a terminal after all */ }
  if (columns <= 0) columns = Number(Deno.env.get("COLUMNS")) || 80;
  return Math.max(columns, 20);
}

/** Cuts `line` to `width` visible characters (escape codes kept, colour reset at the end). */
function clip(line: string, width: number): string {
  let out = "";
  let shown = 0;
  for (let i = 0; i < line.length && shown < width; i++) {
    if (line[i] === ESC) {
      const end = line.indexOf("m", i);
      if (end === -1) break;
      out += line.slice(i, end + 1);
      i = end;
      continue;
    }
    out += line[i];
    shown++;
  }
  return out.endsWith("…") ? out : `${out.slice(0, -1)}…${ESC}[0m`;
}
