import assert from "node:assert/strict";
import {
  charKeys,
  keyName,
  parseChord,
  QKEYCODES,
  qmpKeys,
  textKeys,
} from "../../src/qemu/keys.ts";
import {
  parseHoldTime,
  parseJsonArgs,
  parseProperties,
  propertyValue,
  screendumpTarget,
} from "../../src/qemu/qmp_args.ts";
import { UsageError } from "../../src/errors.ts";

Deno.test("key names: QKeyCode names pass, aliases and case resolve to them", () => {
  const cases: [string, string][] = [
    ["a", "a"],
    ["A", "a"],
    ["ctrl", "ctrl"],
    ["Ctrl_R", "ctrl_r"],
    ["delete", "delete"],
    ["del", "delete"],
    ["enter", "ret"],
    ["Return", "ret"],
    ["space", "spc"],
    ["escape", "esc"],
    ["f12", "f12"],
    ["kp_0", "kp_0"],
    ["pageup", "pgup"],
    ["win", "meta_l"],
  ];
  for (const [name, want] of cases) assert.equal(keyName(name), want, name);
});

Deno.test("key names: QEMU 7.2's full list is known, and nothing else", () => {
  assert.equal(QKEYCODES.length, 150);
  assert.equal(new Set(QKEYCODES).size, 150);
  for (const name of QKEYCODES) assert.equal(keyName(name), name);
  for (const bad of ["ctl", "foo", "f13", "toString", "constructor", "kp-0", ""]) {
    assert.throws(() => keyName(bad), UsageError, bad);
  }
  assert.throws(() => keyName("ctl"), /unknown key 'ctl'/);
});

Deno.test("chords: separate arguments and '-' or '+' joined ones are the same chord", () => {
  const cases: [string[], string[]][] = [
    [["ctrl", "alt", "delete"], ["ctrl", "alt", "delete"]],
    [["ctrl-alt-delete"], ["ctrl", "alt", "delete"]],
    [["ctrl+alt+del"], ["ctrl", "alt", "delete"]],
    [["ctrl-alt", "f2"], ["ctrl", "alt", "f2"]],
    [["Shift-A"], ["shift", "a"]],
    [["minus"], ["minus"]],
  ];
  for (const [args, want] of cases) assert.deepEqual(parseChord(args), want, args.join(" "));
});

Deno.test("chords: an unknown key is a usage error naming it; empty parts are refused", () => {
  assert.throws(() => parseChord(["ctrl", "alt", "delet"]), /unknown key 'delet'/);
  assert.throws(() => parseChord(["ctrl-bogus"]), /unknown key 'bogus'/);
  assert.throws(() => parseChord(["ctrl--a"]), /invalid key 'ctrl--a'/);
  assert.throws(() => parseChord(["-"]), UsageError);
  assert.throws(() => parseChord([]), /no keys given/);
});

Deno.test("US layout: every printable ASCII character has a key, shifted ones hold shift", () => {
  const cases: [string, string[]][] = [
    ["a", ["a"]],
    ["z", ["z"]],
    ["A", ["shift", "a"]],
    ["Z", ["shift", "z"]],
    ["0", ["0"]],
    ["9", ["9"]],
    [" ", ["spc"]],
    ["\n", ["ret"]],
    ["\t", ["tab"]],
    ["`", ["grave_accent"]],
    ["-", ["minus"]],
    ["=", ["equal"]],
    ["[", ["bracket_left"]],
    ["]", ["bracket_right"]],
    ["\\", ["backslash"]],
    [";", ["semicolon"]],
    ["'", ["apostrophe"]],
    [",", ["comma"]],
    [".", ["dot"]],
    ["/", ["slash"]],
    ["~", ["shift", "grave_accent"]],
    ["!", ["shift", "1"]],
    ["@", ["shift", "2"]],
    ["#", ["shift", "3"]],
    ["$", ["shift", "4"]],
    ["%", ["shift", "5"]],
    ["^", ["shift", "6"]],
    ["&", ["shift", "7"]],
    ["*", ["shift", "8"]],
    ["(", ["shift", "9"]],
    [")", ["shift", "0"]],
    ["_", ["shift", "minus"]],
    ["+", ["shift", "equal"]],
    ["{", ["shift", "bracket_left"]],
    ["}", ["shift", "bracket_right"]],
    ["|", ["shift", "backslash"]],
    [":", ["shift", "semicolon"]],
    ['"', ["shift", "apostrophe"]],
    ["<", ["shift", "comma"]],
    [">", ["shift", "dot"]],
    ["?", ["shift", "slash"]],
  ];
  for (const [char, want] of cases) assert.deepEqual(charKeys(char), want, JSON.stringify(char));
  for (let code = 0x20; code < 0x7f; code++) {
    const keys = charKeys(String.fromCharCode(code));
    assert.ok(keys, `U+${code.toString(16)} has no key`);
    for (const key of keys) assert.equal(keyName(key), key);
  }
});

Deno.test("typing text gives one chord per character, in order; CRLF is one ret", () => {
  assert.deepEqual(textKeys("Hi, you!\n"), [
    ["shift", "h"],
    ["i"],
    ["comma"],
    ["spc"],
    ["y"],
    ["o"],
    ["u"],
    ["shift", "1"],
    ["ret"],
  ]);
  assert.deepEqual(textKeys("a\r\nb\rc"), [["a"], ["ret"], ["b"], ["ret"], ["c"]]);
  assert.deepEqual(textKeys(""), []);
});

Deno.test("an untypable character is a usage error naming it and its position", () => {
  const cases: [string, RegExp][] = [
    ["café", /cannot type 'é' \(U\+00E9\) at position 4/],
    ["ok 👍 now", /cannot type '👍' \(U\+1F44D\) at position 4/],
    ["👍é", /cannot type '👍' \(U\+1F44D\) at position 1/],
    ["a\u0007b", /cannot type U\+0007 at position 2/],
    ["x\u00a0y", /cannot type '\u00a0' \(U\+00A0\) at position 2/],
    ["del\u007f", /cannot type U\+007F at position 4/],
  ];
  for (const [text, want] of cases) {
    assert.throws(() => textKeys(text), (error: Error) => {
      assert.ok(error instanceof UsageError);
      assert.match(error.message, want);
      return true;
    });
  }
});

Deno.test("keys become QMP send-key qcodes", () => {
  assert.deepEqual(qmpKeys(["shift", "a"]), [
    { type: "qcode", data: "shift" },
    { type: "qcode", data: "a" },
  ]);
});

Deno.test("qmp run's JSON-ARGS must be a JSON object; parse errors keep the reason", () => {
  assert.equal(parseJsonArgs(undefined), undefined);
  assert.deepEqual(parseJsonArgs('{"a": 1, "b": [true]}'), { a: 1, b: [true] });
  assert.deepEqual(parseJsonArgs("{}"), {});
  assert.throws(() => parseJsonArgs("{a: 1}"), /invalid JSON-ARGS: .*JSON/);
  for (const bad of ["[1]", "1", '"x"', "null", "true"]) {
    assert.throws(() => parseJsonArgs(bad), /must be a JSON object/, bad);
  }
});

Deno.test("device properties: integers and true/false are typed, everything else a string", () => {
  const cases: [string, string | number | boolean][] = [
    ["1024", 1024],
    ["0", 0],
    ["-3", -3],
    ["true", true],
    ["false", false],
    ["on", "on"],
    ["off", "off"],
    ["0x10", "0x10"],
    ["007", "007"],
    ["1.5", "1.5"],
    ["99999999999999999999", "99999999999999999999"],
    ["", ""],
    ["pci.0", "pci.0"],
  ];
  for (const [text, want] of cases) assert.equal(propertyValue(text), want, text);
  assert.deepEqual(parseProperties(["bus=pci.0", "addr=0x5", "max-bytes=1024", "x=a=b"]), {
    bus: "pci.0",
    addr: "0x5",
    "max-bytes": 1024,
    x: "a=b",
  });
  assert.throws(() => parseProperties(["bus"]), /invalid property 'bus': use KEY=VALUE/);
  assert.throws(() => parseProperties(["=1"]), /invalid property '=1'/);
  assert.throws(() => parseProperties(["id=x"]), /given as the ID argument/);
  assert.throws(() => parseProperties(["driver=x"]), /given as the DRIVER argument/);
  assert.throws(() => parseProperties(["a=1", "a=2"]), /'a' given twice/);
});

Deno.test("--hold-time takes whole milliseconds", () => {
  assert.equal(parseHoldTime(undefined), undefined);
  assert.equal(parseHoldTime(undefined, 20), 20);
  assert.equal(parseHoldTime("0"), 0);
  assert.equal(parseHoldTime("150"), 150);
  for (const bad of ["-1", "1.5", "abc", "", "1e3"]) {
    assert.throws(() => parseHoldTime(bad), /invalid --hold-time/, bad);
  }
});

Deno.test("screendump: PNG for .png, else PPM, --format overrides; the path is made absolute", () => {
  const cases: [string, string | undefined, string, string][] = [
    ["/x/shot.png", undefined, "/x/shot.png", "png"],
    ["/x/shot.PNG", undefined, "/x/shot.PNG", "png"],
    ["/x/shot.ppm", undefined, "/x/shot.ppm", "ppm"],
    ["/x/shot", undefined, "/x/shot", "ppm"],
    ["shot.png", undefined, "/work/dir/shot.png", "png"],
    ["../up/shot.img", "png", "/work/up/shot.img", "png"],
    ["/x/shot.png", "ppm", "/x/shot.png", "ppm"],
  ];
  for (const [file, format, path, want] of cases) {
    assert.deepEqual(screendumpTarget(file, { format, cwd: "/work/dir" }), {
      file: path,
      format: want,
    });
  }
  assert.throws(() => screendumpTarget("a.jpg", { format: "jpg" }), /invalid --format 'jpg'/);
});
