/**
 * QEMU option text (`file=a,,b.img,if=virtio`): the one escaping qvm does and its reverse. Pure.
 * Kept in config/ because configs are checked and resolved in this text (an `arguments` item's
 * `id=`, a path inside an option) before `qemu/argv.ts` builds the command line from them.
 */

/**
 * Escapes one value inside a QEMU `key=value,...` option: a literal comma is written `,,`.
 * The only escaping qvm does; every file path, name and sub-option value goes through it.
 */
export function escapeOptionValue(value: string): string {
  return value.replaceAll(",", ",,");
}

/**
 * Splits QEMU option text (`file=a,,b.img,if=virtio`) into its parts at single commas; `,,` is a
 * literal comma and comes back as `,`. `parts.map(escapeOptionValue).join(",")` gives the text back.
 */
export function splitOptionText(text: string): string[] {
  const parts: string[] = [];
  let current = "";
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== ",") {
      current += text[i];
    } else if (text[i + 1] === ",") {
      current += ",";
      i++;
    } else {
      parts.push(current);
      current = "";
    }
  }
  parts.push(current);
  return parts;
}
