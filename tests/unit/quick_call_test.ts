/**
 * The quick routes (src/cli/quick.ts) take only `status VM` and `ls --json` with the folder
 * flags: every other form goes to the full command, which parses and reports it.
 */
import assert from "node:assert/strict";
import { quickCall } from "../../src/cli/quick.ts";

Deno.test("the quick routes take status VM and ls --json, with the folder flags anywhere", () => {
  assert.deepEqual(quickCall(["status", "web1"]), { command: "status", vm: "web1" });
  assert.deepEqual(quickCall(["ls", "--json"]), { command: "ls" });
  assert.deepEqual(quickCall(["--json", "ls"]), { command: "ls" });
  assert.deepEqual(quickCall(["ls", "--format", "json"]), { command: "ls" });
  assert.deepEqual(quickCall(["ls", "--format=json"]), { command: "ls" });
  assert.deepEqual(quickCall(["--data-dir", "/d", "status", "web1", "--runtime-dir=/r"]), {
    command: "status",
    vm: "web1",
    dataDir: "/d",
    runtimeDir: "/r",
  });
  assert.deepEqual(quickCall(["ls", "--data-dir=/d", "--json"]), { command: "ls", dataDir: "/d" });
});

Deno.test("every other form is left to the full command", () => {
  const others = [
    [],
    ["status"], // no VM: the full command says so
    ["status", "a", "b"],
    ["status", "web1", "--json"],
    ["status", "--json", "web1"],
    ["status", "web1", "--debug"],
    ["status", "web1", "--help"],
    ["status", "web1", "-h"],
    ["status", "--", "web1"],
    ["status", "-"],
    ["ls"], // the table
    ["ls", "--json", "--quiet"],
    ["ls", "--json", "-q"],
    ["ls", "--json", "--status", "running"],
    ["ls", "--format", "table"],
    ["ls", "--format", "name,status"],
    ["ls", "--format"],
    ["ls", "--json", "extra"],
    ["info", "web1"],
    ["stop", "web1"],
    ["ls", "--json", "--data-dir"], // no value
    ["ls", "--json", "--data-dir="], // empty: the full command refuses it
    ["ls", "--json", "--data-dir", "--json"],
    ["ls", "--json", "--data-dir", "/a", "--data-dir", "/b"],
    ["ls", "--json", "--data-dir=/a", "--data-dir=/b"],
    ["ls", "--json", "--datadir", "/a"],
    ["ls", "--json", "-d", "/a"],
  ];
  for (const argv of others) assert.equal(quickCall(argv), undefined, argv.join(" "));
});
