import assert from "node:assert/strict";
import { sha256Hex } from "../../src/sha256.ts";

async function webCrypto(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("sha256Hex gives WebCrypto's digest at every length around the block edges", async () => {
  assert.equal(
    sha256Hex("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  for (let length = 0; length <= 200; length++) {
    const text = Array.from({ length }, (_, i) => String.fromCharCode(97 + (i * 7 + length) % 26))
      .join("");
    assert.equal(sha256Hex(text), await webCrypto(text), `length ${length}`);
  }
  for (
    const text of ["/var/lib/qvm/disks/é.qcow2", "ünïcödé 🚀 ".repeat(40), "x".repeat(100_000)]
  ) {
    assert.equal(sha256Hex(text), await webCrypto(text));
  }
});
