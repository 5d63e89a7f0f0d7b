/**
 * Status changes name only the columns they set: every combination of pid, QMP socket and stop
 * reason writes exactly those (and leaves the others as they were), by id and by name, and every
 * such UPDATE finds its row by an index SEARCH.
 */
import assert from "node:assert/strict";
import {
  databasePath,
  observedParam,
  type ObservedRow,
  StateStore,
  type StatusFields,
} from "../../src/state/mod.ts";
import { statusSql } from "../../src/state/store.ts";

const COMBINATIONS: StatusFields[] = [
  {},
  { pid: 4242 },
  { qmpSocketPath: "/run/q.qmp" },
  { stopReason: "guest shutdown" },
  { pid: 4242, qmpSocketPath: "/run/q.qmp" },
  { pid: null, stopReason: "crashed" },
  { qmpSocketPath: null, stopReason: null },
  { pid: 7, qmpSocketPath: "/run/x.qmp", stopReason: null },
];

async function withStore(fn: (store: StateStore) => void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qvm-status-" });
  const store = StateStore.open(databasePath(dir));
  try {
    fn(store);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const EMPTY = { arguments: [], args: [], storage: [] };

for (const [i, fields] of COMBINATIONS.entries()) {
  Deno.test(`updateStatus with ${JSON.stringify(fields)} sets those fields and keeps the rest`, async () => {
    await withStore((store) => {
      const vm = store.insert({ name: `vm${i}`, config: { name: `vm${i}`, ...EMPTY } });
      const before = { pid: 1, qmpSocketPath: "/run/before.qmp", stopReason: "before" };
      assert.ok(store.updateStatus(vm.id, "stopped", before));
      const key = i % 2 ? vm.name : vm.id;
      assert.ok(store.updateStatus(key, "running", fields));
      const after = store.require(vm.id);
      assert.equal(after.status, "running");
      for (const name of ["pid", "qmpSocketPath", "stopReason"] as const) {
        const want = name in fields ? fields[name] ?? null : before[name];
        assert.equal(after[name], want, name);
      }
      assert.equal(store.updateStatus("no-such-vm", "running", fields), false);
    });
  });
}

Deno.test("every status UPDATE, by id and by name, finds its row by an index SEARCH", async () => {
  await withStore((store) => {
    for (const fields of COMBINATIONS) {
      for (const key of ["id", "name"] as const) {
        const sql = statusSql(fields, key);
        const plan = (store.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[])
          .map((r) => r.detail);
        assert.ok(plan.some((d) => /^SEARCH vm_instances USING INDEX/.test(d)), `${sql}: ${plan}`);
        assert.ok(!plan.some((d) => /^SCAN/.test(d)), `${sql}: ${plan}`);
        for (const name of ["pid", "qmp_socket_path", "stop_reason"]) {
          const field = { pid: "pid", qmp_socket_path: "qmpSocketPath", stop_reason: "stopReason" }[
            name
          ] as keyof StatusFields;
          assert.equal(sql.includes(`${name} = ?`), field in fields, `${sql} and ${name}`);
        }
      }
    }
  });
});

Deno.test("the observed statuses ls --json hands SQLite are the JSON of the map, whatever they hold", () => {
  const observed = new Map<string, ObservedRow>([
    ["0b6c4f0e-1111-4a2b-9c3d-000000000001", { status: "running", pid: 4242, stop_reason: null }],
    ["0b6c4f0e-1111-4a2b-9c3d-000000000002", {
      status: "stopped",
      pid: null,
      stop_reason: 'said "no"\n\u2603',
    }],
    ["a\\b", { status: "paused", pid: 0, stop_reason: "" }],
  ]);
  assert.equal(observedParam(observed), JSON.stringify(Object.fromEntries(observed)));
  assert.equal(observedParam(new Map()), undefined);
});
