/**
 * The XML qvm reads and writes for libvirt: a small element tree, a writer that escapes every
 * value, and a strict parser for the subset domain XML uses (elements, attributes, text, CDATA,
 * comments, the XML declaration, the five named entities and character references). A DOCTYPE is
 * refused: domain XML never has one, and entity definitions are how XML parsers get abused.
 *
 * The writer escapes tab, line feed and carriage return in attributes (an XML 1.0 reader such as
 * libxml2, which libvirt reads with, turns them into spaces otherwise) and carriage return in text
 * (read as a line feed otherwise), and refuses the characters XML 1.0 cannot carry at all. The
 * parser refuses those characters too, and reads a CR LF pair as a line feed; a tab, line feed or
 * lone carriage return written literally is kept as that character, as libvirt's own writer
 * (`virsh dumpxml`) means it: it writes them unescaped, in attributes too.
 */

/** One element: its qualified name (`qemu:arg`), attributes in order, and child nodes. */
export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
}

/** An element or a run of text. */
export type XmlNode = XmlElement | string;

/** Malformed XML; `offset` is where in the text it went wrong. */
export class XmlSyntaxError extends Error {
  offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.name = "XmlSyntaxError";
    this.offset = offset;
  }
}

/** A value holds a character XML 1.0 cannot carry (a C0 control other than tab, LF, CR). */
export class XmlCharError extends Error {
  /** Where: `<cmdline>` or `<qemu:arg value>`. */
  where: string;
  /** The character as `U+0001`. */
  char: string;
  constructor(where: string, char: string) {
    const code = `U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
    super(`${where} holds ${code}, a character XML 1.0 cannot carry`);
    this.name = "XmlCharError";
    this.where = where;
    this.char = code;
  }
}

/**
 * One character XML 1.0 has no room for, even as a reference: C0 controls but tab, line feed and
 * carriage return; U+FFFE, U+FFFF; a lone surrogate.
 */
const NOT_XML_CHAR =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The first character of `text` XML 1.0 cannot carry, or undefined. */
export function badXmlChar(text: string): string | undefined {
  return NOT_XML_CHAR.exec(text)?.[0];
}

function checkChars(text: string, where: string): string {
  const bad = badXmlChar(text);
  if (bad !== undefined) throw new XmlCharError(where, bad);
  return text;
}

/** Builds an element; attributes whose value is undefined are left out. */
export function el(
  name: string,
  attrs: Record<string, string | number | undefined> = {},
  children: (XmlNode | undefined)[] = [],
): XmlElement {
  const kept: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) kept[k] = String(v);
  return { name, attrs: kept, children: children.filter((c) => c !== undefined) as XmlNode[] };
}

/**
 * Escapes text for an attribute value: markup characters, and tab, line feed and carriage return
 * as character references, which a parser keeps (it turns the literal characters into spaces).
 */
export function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;").replaceAll("'", "&apos;").replaceAll("\t", "&#9;")
    .replaceAll("\n", "&#10;").replaceAll("\r", "&#13;");
}

/** Escapes element content (quotes may stay; a carriage return would be read as a line feed). */
function escapeText(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll("\r", "&#13;");
}

/**
 * Writes `root` as an indented document (two spaces a level; text-only elements on one line).
 * Throws XmlCharError when a value holds a character XML 1.0 cannot carry.
 */
export function writeXml(root: XmlElement): string {
  const lines: string[] = [];
  const write = (node: XmlElement, depth: number): void => {
    const pad = "  ".repeat(depth);
    const attrs = Object.entries(node.attrs).map(([k, v]) =>
      ` ${k}="${escapeXml(checkChars(v, `<${node.name} ${k}>`))}"`
    ).join("");
    const text = (value: string) => escapeText(checkChars(value, `<${node.name}>`));
    if (node.children.length === 0) {
      lines.push(`${pad}<${node.name}${attrs}/>`);
    } else if (node.children.every((c) => typeof c === "string")) {
      lines.push(`${pad}<${node.name}${attrs}>${text(node.children.join(""))}</${node.name}>`);
    } else {
      lines.push(`${pad}<${node.name}${attrs}>`);
      for (const child of node.children) {
        if (typeof child === "string") {
          if (child.trim() !== "") lines.push(pad + "  " + text(child.trim()));
        } else write(child, depth + 1);
      }
      lines.push(`${pad}</${node.name}>`);
    }
  };
  write(root, 0);
  return lines.join("\n") + "\n";
}

const NAME = /[A-Za-z_:][A-Za-z0-9_.:-]*/y;
const SPACE = /[ \t\r\n]*/y;
const NAMED: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };
/** How deep elements may nest: libxml2's own default limit, far beyond any domain XML. */
const MAX_DEPTH = 256;

function decode(text: string, at: number): string {
  return text.replace(/&([^;&]*);?/g, (whole, ref: string) => {
    if (!whole.endsWith(";")) throw new XmlSyntaxError(`unterminated reference '${whole}'`, at);
    if (ref in NAMED) return NAMED[ref];
    const code = /^#x[0-9a-f]+$/i.test(ref)
      ? parseInt(ref.slice(2), 16)
      : /^#[0-9]+$/.test(ref)
      ? parseInt(ref.slice(1), 10)
      : NaN;
    if (!(code >= 1 && code <= 0x10ffff) || (code >= 0xd800 && code <= 0xdfff)) {
      throw new XmlSyntaxError(`unknown reference '&${ref};'`, at);
    }
    const char = String.fromCodePoint(code);
    if (badXmlChar(char) !== undefined) {
      throw new XmlSyntaxError(`'&${ref};' is a character XML 1.0 does not allow`, at);
    }
    return char;
  });
}

/** A cursor over a document being parsed (see `parseXml`). */
class XmlReader {
  pos = 0;

  constructor(readonly text: string) {}

  fail(message: string): never {
    throw new XmlSyntaxError(message, this.pos);
  }

  skipSpace(): void {
    SPACE.lastIndex = this.pos;
    SPACE.exec(this.text);
    this.pos = SPACE.lastIndex;
  }

  readName(): string {
    NAME.lastIndex = this.pos;
    const match = NAME.exec(this.text);
    if (!match) this.fail(`expected a name at offset ${this.pos}`);
    this.pos = NAME.lastIndex;
    return match![0];
  }

  skipUntil(end: string, what: string): void {
    const at = this.text.indexOf(end, this.pos);
    if (at < 0) this.fail(`unterminated ${what}`);
    this.pos = at + end.length;
  }

  /** Skips comments, processing instructions and space between markup outside the root. */
  skipMisc(): void {
    for (;;) {
      this.skipSpace();
      if (this.text.startsWith("<?", this.pos)) this.skipUntil("?>", "processing instruction");
      else if (this.text.startsWith("<!--", this.pos)) this.skipUntil("-->", "comment");
      else if (this.text.startsWith("<!DOCTYPE", this.pos)) this.fail("a DOCTYPE is not accepted");
      else return;
    }
  }

  /** The element at the cursor (`<` comes next) and all it holds, `depth` deep in the document. */
  readElement(depth = 1): XmlElement {
    if (this.text[this.pos] !== "<") this.fail(`expected '<' at offset ${this.pos}`);
    if (depth > MAX_DEPTH) {
      this.fail(`elements nest more than ${MAX_DEPTH} deep at offset ${this.pos}`);
    }
    this.pos++;
    const name = this.readName();
    const { attrs, empty } = this.readAttributes(name);
    if (empty) return { name, attrs, children: [] };
    return { name, attrs, children: this.readChildren(name, depth) };
  }

  /** The attributes of start tag `<name`, up to its `>` (or `/>`: then `empty`). */
  readAttributes(name: string): { attrs: Record<string, string>; empty: boolean } {
    const text = this.text;
    const attrs: Record<string, string> = {};
    for (;;) {
      const before = this.pos;
      this.skipSpace();
      if (text.startsWith("/>", this.pos)) {
        this.pos += 2;
        return { attrs, empty: true };
      }
      if (text[this.pos] === ">") {
        this.pos++;
        return { attrs, empty: false };
      }
      if (this.pos === before) {
        this.fail(`expected space, '>' or '/>' in <${name}> at offset ${this.pos}`);
      }
      const key = this.readName();
      this.skipSpace();
      if (text[this.pos] !== "=") this.fail(`attribute ${key} of <${name}> has no value`);
      this.pos++;
      this.skipSpace();
      const quote = text[this.pos];
      if (quote !== '"' && quote !== "'") this.fail(`attribute ${key} of <${name}> is not quoted`);
      const end = text.indexOf(quote, this.pos + 1);
      if (end < 0) this.fail(`unterminated attribute ${key} of <${name}>`);
      const raw = text.slice(this.pos + 1, end);
      if (raw.includes("<")) this.fail(`'<' inside attribute ${key} of <${name}>`);
      if (key in attrs) this.fail(`attribute ${key} repeated in <${name}>`);
      attrs[key] = decode(raw, this.pos);
      this.pos = end + 1;
    }
  }

  /** The children of `<name>`, `depth` deep, up to and including its end tag. */
  readChildren(name: string, depth: number): XmlNode[] {
    const text = this.text;
    const children: XmlNode[] = [];
    let textRun = "";
    const flush = (): void => {
      if (textRun !== "") children.push(textRun);
      textRun = "";
    };
    for (;;) {
      if (this.pos >= text.length) this.fail(`<${name}> is not closed`);
      if (text.startsWith("</", this.pos)) {
        this.pos += 2;
        const closing = this.readName();
        if (closing !== name) this.fail(`</${closing}> closes <${name}>`);
        this.skipSpace();
        if (text[this.pos] !== ">") this.fail(`expected '>' after </${closing}`);
        this.pos++;
        flush();
        return children;
      }
      if (text.startsWith("<!--", this.pos)) {
        this.skipUntil("-->", "comment");
      } else if (text.startsWith("<![CDATA[", this.pos)) {
        const start = this.pos + 9;
        this.skipUntil("]]>", "CDATA section");
        textRun += text.slice(start, this.pos - 3);
      } else if (text.startsWith("<?", this.pos)) {
        this.skipUntil("?>", "processing instruction");
      } else if (text[this.pos] === "<") {
        flush();
        children.push(this.readElement(depth + 1));
      } else {
        const next = text.indexOf("<", this.pos);
        const end = next < 0 ? text.length : next;
        textRun += decode(text.slice(this.pos, end), this.pos);
        this.pos = end;
      }
    }
  }
}

/**
 * Parses a document and returns its root element; throws XmlSyntaxError when malformed or when it
 * holds a character XML 1.0 does not allow. A CR LF pair is read as a line feed.
 */
export function parseXml(source: string): XmlElement {
  const bad = NOT_XML_CHAR.exec(source);
  if (bad) {
    const code = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
    throw new XmlSyntaxError(
      `U+${code} at offset ${bad.index} is a character XML 1.0 does not allow`,
      bad.index,
    );
  }
  const reader = new XmlReader(source.replaceAll("\r\n", "\n"));
  if (reader.text.charCodeAt(0) === 0xfeff) reader.pos = 1;
  reader.skipMisc();
  if (reader.pos >= reader.text.length) reader.fail("the document is empty");
  const root = reader.readElement();
  reader.skipMisc();
  if (reader.pos < reader.text.length) {
    reader.fail(`unexpected content after </${root.name}> at offset ${reader.pos}`);
  }
  return root;
}

/** Child elements of `node` (none when it is undefined), optionally only those named `name`. */
export function childElements(node: XmlElement | undefined, name?: string): XmlElement[] {
  if (node === undefined) return [];
  return node.children.filter((c): c is XmlElement =>
    typeof c !== "string" && (name === undefined || c.name === name)
  );
}

/** The first child element named `name`, or undefined. */
export function child(node: XmlElement | undefined, name: string): XmlElement | undefined {
  return node === undefined ? undefined : childElements(node, name)[0];
}

/** The element's text content (its direct text children, trimmed). */
export function textOf(node: XmlElement | undefined): string | undefined {
  if (node === undefined) return undefined;
  return node.children.filter((c): c is string => typeof c === "string").join("").trim();
}
