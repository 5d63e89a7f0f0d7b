/**
 * Keyboard input for QMP `send-key`, pure: QEMU key names (QKeyCode) and their validation, chords
 * like `ctrl-alt-delete`, and text turned into one chord per character with the US layout.
 */
import { UsageError } from "../errors.ts";

/** Every QKeyCode name QEMU 7.2 accepts (from its `query-qmp-schema`), in QEMU's order. */
export const QKEYCODES: readonly string[] = [
  "unmapped shift shift_r alt alt_r ctrl ctrl_r menu esc 1 2 3 4 5 6 7 8 9 0 minus equal",
  "backspace tab q w e r t y u i o p bracket_left bracket_right ret a s d f g h j k l",
  "semicolon apostrophe grave_accent backslash z x c v b n m comma dot slash asterisk spc",
  "caps_lock f1 f2 f3 f4 f5 f6 f7 f8 f9 f10 num_lock scroll_lock kp_divide kp_multiply",
  "kp_subtract kp_add kp_enter kp_decimal sysrq kp_0 kp_1 kp_2 kp_3 kp_4 kp_5 kp_6 kp_7 kp_8",
  "kp_9 less f11 f12 print home pgup pgdn end left up down right insert delete stop again",
  "props undo front copy open paste find cut lf help meta_l meta_r compose pause ro hiragana",
  "henkan yen muhenkan katakanahiragana kp_comma kp_equals power sleep wake audionext",
  "audioprev audiostop audioplay audiomute volumeup volumedown mediaselect mail calculator",
  "computer ac_home ac_back ac_forward ac_refresh ac_bookmarks lang1 lang2",
].join(" ").split(" ");

const QKEYCODE_SET: ReadonlySet<string> = new Set(QKEYCODES);

/** Friendly names accepted besides the QKeyCode ones (they map to the QKeyCode on the right). */
export const KEY_ALIASES: Readonly<Record<string, string>> = {
  enter: "ret",
  return: "ret",
  space: "spc",
  escape: "esc",
  control: "ctrl",
  del: "delete",
  ins: "insert",
  pageup: "pgup",
  pagedown: "pgdn",
  super: "meta_l",
  win: "meta_l",
  meta: "meta_l",
  capslock: "caps_lock",
};

/** A key as QMP `send-key` takes it. */
export interface QmpKey {
  type: "qcode";
  data: string;
}

/**
 * The QKeyCode for one key name (case-insensitive; aliases such as `enter` resolved). Throws a
 * UsageError naming an unknown key.
 */
export function keyName(name: string): string {
  const lower = name.toLowerCase();
  const key = Object.hasOwn(KEY_ALIASES, lower) ? KEY_ALIASES[lower] : lower;
  if (QKEYCODE_SET.has(key)) return key;
  throw new UsageError(
    `unknown key '${name}': use QEMU key names such as ctrl, alt, shift, delete, ret, spc, esc, ` +
      `a, 1, f1 (see 'qvm qmp keys --help')`,
  );
}

/** The key names `parseChord` accepts, as help text says them. */
export const KEY_NAMES_HELP =
  "Key names are QEMU's (QKeyCode): a-z, 0-9, f1-f12, ctrl, ctrl_r, alt, alt_r, shift, shift_r,\n" +
  "meta_l, meta_r, ret, spc, tab, esc, backspace, delete, insert, home, end, pgup, pgdn, up,\n" +
  "down, left, right, minus, equal, bracket_left, bracket_right, backslash, semicolon,\n" +
  "apostrophe, grave_accent, comma, dot, slash, kp_0-kp_9, kp_enter, sysrq, print, pause, ...\n" +
  "Also accepted: enter, return, space, escape, control, del, ins, pageup, pagedown, super, win,\n" +
  "meta, capslock. Case does not matter.";

/**
 * The keys of one chord from the command line: each argument may itself join keys with `-` or
 * `+` (`ctrl-alt-delete`, `ctrl+c`), so `ctrl alt delete` and `ctrl-alt-delete` are the same.
 */
export function parseChord(args: readonly string[]): string[] {
  const keys: string[] = [];
  for (const arg of args) {
    for (const part of arg.split(/[-+]/)) {
      if (part === "") {
        throw new UsageError(`invalid key '${arg}': join keys with '-', e.g. ctrl-alt-delete`);
      }
      keys.push(keyName(part));
    }
  }
  if (keys.length === 0) throw new UsageError("no keys given");
  return keys;
}

/** Unshifted US-layout characters and their keys (letters and digits are their own key). */
const PLAIN: Readonly<Record<string, string>> = {
  " ": "spc",
  "\n": "ret",
  "\r": "ret",
  "\t": "tab",
  "`": "grave_accent",
  "-": "minus",
  "=": "equal",
  "[": "bracket_left",
  "]": "bracket_right",
  "\\": "backslash",
  ";": "semicolon",
  "'": "apostrophe",
  ",": "comma",
  ".": "dot",
  "/": "slash",
};

/** Characters typed with shift held, and the key under them on a US keyboard. */
const SHIFTED: Readonly<Record<string, string>> = {
  "~": "grave_accent",
  "!": "1",
  "@": "2",
  "#": "3",
  "$": "4",
  "%": "5",
  "^": "6",
  "&": "7",
  "*": "8",
  "(": "9",
  ")": "0",
  "_": "minus",
  "+": "equal",
  "{": "bracket_left",
  "}": "bracket_right",
  "|": "backslash",
  ":": "semicolon",
  '"': "apostrophe",
  "<": "comma",
  ">": "dot",
  "?": "slash",
};

/** The chord that types `char` on a US keyboard (`["shift", "a"]` for `A`), or undefined. */
export function charKeys(char: string): string[] | undefined {
  if (/^[a-z0-9]$/.test(char)) return [char];
  if (/^[A-Z]$/.test(char)) return ["shift", char.toLowerCase()];
  if (Object.hasOwn(PLAIN, char)) return [PLAIN[char]];
  if (Object.hasOwn(SHIFTED, char)) return ["shift", SHIFTED[char]];
  return undefined;
}

function describeChar(char: string): string {
  const code = char.codePointAt(0)!;
  const hex = `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  return code < 0x20 || code === 0x7f ? hex : `'${char}' (${hex})`;
}

/**
 * One chord per character of `text`, in order, for the US layout: capitals and shifted symbols
 * hold shift; `\n` (and `\r`, with `\r\n` as one) is ret, `\t` tab, space spc. Throws a UsageError
 * naming the first character it cannot type and its 1-based position, so nothing is sent.
 */
export function textKeys(text: string): string[][] {
  const chars = Array.from(text);
  const chords: string[][] = [];
  for (let i = 0; i < chars.length; i++) {
    if (chars[i] === "\n" && chars[i - 1] === "\r") continue;
    const keys = charKeys(chars[i]);
    if (keys === undefined) {
      throw new UsageError(
        `cannot type ${describeChar(chars[i])} at position ${i + 1}: ` +
          "only US-keyboard ASCII characters, newline and tab can be typed",
      );
    }
    chords.push(keys);
  }
  return chords;
}

/** A chord as the `keys` argument of QMP `send-key`. */
export function qmpKeys(keys: readonly string[]): QmpKey[] {
  return keys.map((data) => ({ type: "qcode", data }));
}
