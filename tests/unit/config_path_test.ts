/**
 * qvm's own POSIX path functions (src/path.ts) give exactly what node:path gives, over every path
 * of up to six segments from a small alphabet of the tricky parts (`/`, `.`, `..`, names).
 */
import assert from "node:assert/strict";
import * as node from "node:path";
import { dirname, isAbsolute, join, resolve } from "../../src/path.ts";

const PARTS = ["/", ".", "..", "a", "b/"];

function* paths(maxParts: number): Generator<string> {
  yield "";
  let level = [""];
  for (let n = 1; n <= maxParts; n++) {
    level = level.flatMap((p) => PARTS.map((part) => p + part));
    yield* level;
  }
}

Deno.test("dirname, isAbsolute, join and resolve match node:path", () => {
  const all = [...paths(6), "//a", "a//b", "/a/b/", "./a/../../b", "/../a", "a/./b/."];
  for (const a of all) {
    assert.equal(dirname(a), node.dirname(a), `dirname(${JSON.stringify(a)})`);
    assert.equal(isAbsolute(a), node.isAbsolute(a), `isAbsolute(${JSON.stringify(a)})`);
    assert.equal(join(a), node.join(a), `join(${JSON.stringify(a)})`);
    assert.equal(resolve(a), node.resolve(a), `resolve(${JSON.stringify(a)})`);
  }
  const some = [...paths(3)];
  for (const a of some) {
    for (const b of some) {
      const args = JSON.stringify([a, b]);
      assert.equal(join(a, b), node.join(a, b), `join(${args})`);
      assert.equal(resolve(a, b), node.resolve(a, b), `resolve(${args})`);
    }
  }
  assert.equal(join(), node.join());
  assert.equal(resolve(), node.resolve());
  assert.equal(join("/x", "a", "", "../b"), node.join("/x", "a", "", "../b"));
});
