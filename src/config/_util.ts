/** Private helpers of the config module (not re-exported by `mod.ts`). */

/** True for a plain data map (what YAML and JSON produce), false for lists, null and class instances. */
export function isMap(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Sets `key` as an own data property, so a YAML key `__proto__` can never change a prototype. */
export function setKey(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** Deep copy of plain YAML/JSON data. */
export function clone<T>(value: T): T {
  return structuredClone(value);
}

const MAX_SHOWN = 80;

/**
 * Renders a value for a one-line error message: quoted, control characters escaped, long text cut,
 * so that a message never spans lines whatever the user wrote.
 */
export function show(value: unknown): string {
  let text: string;
  if (typeof value === "string") text = value;
  else if (value === null || value === undefined) return "null";
  else if (typeof value === "number" || typeof value === "boolean") text = String(value);
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  // deno-lint-ignore no-control-regex
  text = text.replace(/[\u0000-\u001f\u007f]/g, (c) => {
    const named: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
    return named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
  if (text.length > MAX_SHOWN) text = `${text.slice(0, MAX_SHOWN)}...`;
  return `'${text}'`;
}

/** Names a value's kind for messages: "a string", "a list", "a map", ... */
export function kindOf(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (isMap(value)) return "a map";
  if (typeof value === "boolean") return "true/false";
  if (typeof value === "number") return "a number";
  if (typeof value === "string") return "a string";
  return typeof value;
}
