/** Command lines as text for a POSIX shell. */

/** `argv` as one shell-pasteable line (`start --dry-run`, a remote command for ssh). */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)
    .join(" ");
}
