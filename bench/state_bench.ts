/**
 * `deno bench -A bench/state_bench.ts`: the state store's id-or-name operations (get by id, get by
 * name, update status, update config, remove) on real SQLite files of 10 to 100,000 VMs, for ours
 * (the `StateStore`), the `OR` form and a forced scan. One group per operation and size, ours the
 * baseline. `QVM_BENCH_SIZES=10,100` limits the sizes. Remove is measured as remove + re-insert of
 * the same row (see `REMOVE_METHOD` in `_state_fixture.ts`). `bench/table.ts` prints the same
 * matrix as a markdown table.
 */
import {
  benchSizes,
  createPopulation,
  disposePopulation,
  makeOperation,
  OPERATIONS,
  type Population,
  VARIANTS,
} from "./_state_fixture.ts";

const populations: Population[] = [];

function registerSize(size: number): void {
  const population = createPopulation(size);
  populations.push(population);
  const vms = `${size.toLocaleString("en-US")} VMs`;
  for (const operation of OPERATIONS) {
    for (const variant of VARIANTS) {
      Deno.bench({
        name: `${variant}: ${operation}, ${vms}`,
        group: `${operation}, ${vms}`,
        baseline: variant === "ours",
        fn: makeOperation(population, { operation, variant }),
      });
    }
  }
}

for (const size of benchSizes()) registerSize(size);

globalThis.addEventListener("unload", () => {
  for (const population of populations) disposePopulation(population);
});
