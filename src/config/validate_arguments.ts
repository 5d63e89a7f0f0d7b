/**
 * `args:` (QEMU options as strings) and `arguments:` (maqet's items, `{m: 2G}`, `enable-kvm`):
 * checked, flags normalized, options qvm manages refused, and the options QEMU refuses when
 * detached (stdio, curses) refused or left out with a warning.
 */
import { UsageError } from "../errors.ts";
import { isMap, kindOf, show } from "./_util.ts";
import { argumentOption, bareFlag, FLAG_OPTIONS, stripDashes } from "./arguments.ts";
import { KEY_PATTERN } from "./_values.ts";
import { memoryOf } from "./validate_machine.ts";
import { parseSize, wholeSize } from "./size.ts";
import type { ArgumentItem, ArgValue } from "./types.ts";

/** Options that would take a VM out of qvm's hands (it must find and identify its QEMU). */
const MANAGED_OPTIONS = new Set(["daemonize", "pidfile", "uuid"]);

/** `args:`: a list of strings (numbers become text), passed to QEMU as they are. */
export function argsOf(value: unknown, warn: (message: string) => void): string[] {
  if (!Array.isArray(value)) {
    throw new UsageError(
      `invalid args ${show(value)}: expected a list of strings, got ${kindOf(value)}`,
    );
  }
  return value.map((arg, i) => {
    if (typeof arg === "string") {
      if (MANAGED_OPTIONS.has(arg.replace(/^--?/, "")) && arg.startsWith("-")) {
        throw new UsageError(`invalid args[${i}] ${show(arg)}: this option is managed by qvm`);
      }
      if (/^--?nographic$/.test(arg)) warn(NOGRAPHIC);
      if (arg.startsWith("-")) checkTerminal(arg, value[i + 1], warn);
      return arg;
    }
    if (typeof arg === "number" && Number.isFinite(arg)) return String(arg);
    throw new UsageError(`invalid args[${i}] ${show(arg)}: expected a string, got ${kindOf(arg)}`);
  });
}

function checkKey(where: string, key: string): void {
  const bare = key.replace(/^--?/, "");
  if (!KEY_PATTERN.test(bare)) {
    throw new UsageError(
      `invalid key ${show(key)} in ${where}: use letters, digits, '.', '_' and '-'`,
    );
  }
}

/** Checks a value inside an `arguments` map; a list inside a list is flattened when written. */
function argValueOf(where: string, value: unknown): ArgValue {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (Number.isFinite(value)) return value;
    throw new UsageError(`invalid value ${show(value)} in ${where}: not a finite number`);
  }
  if (Array.isArray(value)) {
    return value.map((element) => {
      if (element === null) {
        throw new UsageError(`invalid value ${show(value)} in ${where}: a list item is empty`);
      }
      return argValueOf(where, element);
    });
  }
  if (isMap(value)) {
    const out: { [key: string]: ArgValue } = {};
    for (const [key, inner] of Object.entries(value)) {
      checkKey(where, key);
      out[key] = argValueOf(where, inner);
    }
    return out;
  }
  throw new UsageError(`invalid value ${show(value)} in ${where}: unsupported ${kindOf(value)}`);
}

function argumentOf(item: unknown, i: number): ArgumentItem {
  const where = `arguments[${i}]`;
  let checked: ArgumentItem;
  if (typeof item === "string") {
    if (/\s/.test(item)) {
      throw new UsageError(
        `invalid ${where} ${show(item)}: a string item is a flag; write a map like {m: 2G} ` +
          "for an option with a value",
      );
    }
    if (item.replace(/^--?/, "") === "") throw new UsageError(`invalid ${where}: an empty flag`);
    checkKey(where, item);
    checked = item;
  } else if (isMap(item)) {
    if (Object.keys(item).length === 0) {
      throw new UsageError(`invalid ${where}: an empty map (its first key is the option)`);
    }
    checked = argValueOf(where, item) as { [key: string]: ArgValue };
  } else {
    throw new UsageError(
      `invalid ${where} ${show(item)}: expected a string or a map, got ${kindOf(item)}`,
    );
  }
  const option = argumentOption(checked);
  if (MANAGED_OPTIONS.has(option)) {
    throw new UsageError(
      `invalid ${where}: option '${option}' is managed by qvm and cannot be set`,
    );
  }
  if (option === "m" && isMap(checked)) {
    const value = Object.values(checked)[0];
    if (parseSize(wholeSize(value), "M") !== undefined) memoryOf(value); // the same bound
  }
  const key = CONFIG_KEY_NOT_OPTION[option];
  if (key !== undefined) {
    throw new UsageError(
      `invalid ${where}: '${option}' is a config key, not a QEMU option (QEMU has no ` +
        `-${option}); ${key}`,
    );
  }
  return checked;
}

/** Config keys that QEMU has no option for: written in `arguments`, QEMU would refuse them. */
const CONFIG_KEY_NOT_OPTION: Record<string, string> = {
  binary: "write 'binary: PATH' at the top of the config",
  memory: "write 'memory: 2G' at the top of the config, or {m: 2G}",
  storage: "write 'storage:' at the top of the config",
};

const NOGRAPHIC = "nographic: qvm runs QEMU detached, where -nographic is refused; the VM runs " +
  "headless (-display none) with its serial console on 'qvm console'";

/**
 * QEMU's own terminal cannot be used under qvm, which runs QEMU detached (`-daemonize`): a stdio
 * serial port or monitor is left out with a warning (the serial console is `qvm console`), a stdio
 * chardev or the curses display is refused.
 */
export function checkTerminal(
  option: string,
  value: unknown,
  warn: (message: string) => void,
): void {
  const name = option.replace(/^--?/, "");
  if ((name === "serial" || name === "monitor") && (value === "stdio" || value === "mon:stdio")) {
    warn(
      `${name} ${value}: qvm runs QEMU detached, where stdio is refused; it is left out ` +
        (name === "serial"
          ? "and the serial console is on 'qvm console'"
          : "(QEMU's monitor: 'qvm qmp run VM human-monitor-command')"),
    );
  }
  const head = typeof value === "string"
    ? value.split(",")[0]
    : isMap(value)
    ? Object.keys(value)[0]
    : value;
  if ((name === "chardev" && head === "stdio") || (name === "display" && head === "curses")) {
    throw new UsageError(
      `${name} ${head} cannot be used: qvm runs QEMU detached (-daemonize), where QEMU refuses ` +
        "it; the serial console is on 'qvm console'",
    );
  }
}

/**
 * `{flag: true}` (or on/yes) of an option that takes no value is the bare flag, as written
 * `-flag`; `{flag: false}` (or off/no) leaves it out (null). Any other item is returned as it is.
 */
function flagItem(item: ArgumentItem, where: string): ArgumentItem | null {
  if (typeof item === "string" || bareFlag(item) !== undefined) return item;
  const keys = Object.keys(item);
  const option = stripDashes(keys[0]);
  if (keys.length !== 1 || !FLAG_OPTIONS.has(option)) return item;
  const value = item[keys[0]];
  const word = typeof value === "string" ? value.toLowerCase() : value;
  if (word === true || word === "on" || word === "yes" || word === "true") return option;
  if (word === false || word === "off" || word === "no" || word === "false") return null;
  throw new UsageError(
    `invalid ${where} ${show(item)}: -${option} takes no value; write '${option}' or ` +
      `{${option}: true}`,
  );
}

/** Checks the items; a bare flag given again (`enable-kvm` in two files) is kept once. */
export function argumentsOf(value: unknown, warn: (message: string) => void): ArgumentItem[] {
  if (!Array.isArray(value)) {
    throw new UsageError(`invalid arguments ${show(value)}: expected a list, got ${kindOf(value)}`);
  }
  const flags = new Set<string>();
  const items: ArgumentItem[] = [];
  for (const [i, raw] of value.entries()) {
    if (raw === null || (isMap(raw) && Object.keys(raw).length === 0)) {
      // maqet skips an empty item (`-` or `- {}`); so does qvm, saying so.
      warn(`arguments[${i}] is empty (ignored)`);
      continue;
    }
    const item = flagItem(argumentOf(raw, i), `arguments[${i}]`);
    if (item === null) {
      warn(`arguments[${i}] ${show(raw)} turns a flag off: it is left out`);
      continue;
    }
    const flag = bareFlag(item);
    if (flag !== undefined && flags.has(flag)) continue;
    if (flag !== undefined) flags.add(flag);
    if (argumentOption(item) === "nographic") warn(NOGRAPHIC);
    if (typeof item !== "string") {
      const first = Object.keys(item)[0];
      checkTerminal(first, item[first], warn);
    }
    items.push(item);
  }
  return items;
}
