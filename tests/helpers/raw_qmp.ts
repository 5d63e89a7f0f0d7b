/** A QMP client qvm knows nothing of, as another program (or a person with socat) would be. */

/** Sends QMP `commands` on `socket`; returns once QEMU has answered them all. */
export async function rawQmp(socket: string, commands: string[]): Promise<void> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  try {
    const decoder = new TextDecoder();
    let text = "";
    const buf = new Uint8Array(4096);
    const answers = () => text.split("\n").filter((l) => l.includes('"return"')).length;
    const all = ["qmp_capabilities", ...commands];
    await conn.write(new TextEncoder().encode(all.map((c) => `{"execute":"${c}"}\n`).join("")));
    while (answers() < all.length) {
      const n = await conn.read(buf);
      if (n === null) throw new Error(`QMP closed: ${text}`);
      text += decoder.decode(buf.subarray(0, n));
    }
  } finally {
    conn.close();
  }
}
