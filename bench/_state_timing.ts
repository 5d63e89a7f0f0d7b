/**
 * The table script's own timing loop: warm up, pick a batch size so one `performance.now()` pair is
 * amortised over ~1 ms of work, then measure the variants of one cell in interleaved rounds (so a
 * noisy moment hurts all of them alike) and keep each variant's median round.
 */

/** How long to measure one cell. */
export interface TimeBox {
  /** Total measuring time per variant, split evenly over `rounds`. */
  boxMs: number;
  rounds: number;
  /** Warm-up time per variant before the rounds (at least 3 calls). */
  warmupMs: number;
}

/** One variant's result: µs per operation (median of the rounds) and how many calls were timed. */
export interface Measurement {
  usPerOp: number;
  iterations: number;
  /** µs per operation of each round, in round order. */
  rounds: number[];
}

const BATCH_TARGET_US = 1_000;
const MAX_BATCH = 100_000;

/** The median of `values` (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Runs `fn` for about `ms` (at least 3 calls) and returns its mean µs per call. */
function warmUp(fn: () => void, ms: number): number {
  let calls = 0;
  const start = performance.now();
  let now = start;
  while (calls < 3 || now - start < ms) {
    fn();
    calls++;
    now = performance.now();
  }
  return ((now - start) * 1000) / calls;
}

/** Runs `fn` in batches of `batch` until `ms` has passed; returns calls and elapsed ms. */
function timeRound(fn: () => void, options: { batch: number; ms: number }) {
  let iterations = 0;
  const start = performance.now();
  let now = start;
  do {
    for (let i = 0; i < options.batch; i++) fn();
    iterations += options.batch;
    now = performance.now();
  } while (now - start < options.ms);
  return { iterations, ms: now - start };
}

/**
 * Measures every function of `fns` (one per variant) for `box.boxMs` each, in `box.rounds`
 * interleaved rounds whose variant order rotates, and returns each one's median round.
 */
export function measureInterleaved<K extends string>(
  fns: Record<K, () => void>,
  box: TimeBox,
): Record<K, Measurement> {
  const keys = Object.keys(fns) as K[];
  const batch = {} as Record<K, number>;
  for (const key of keys) {
    const estimate = warmUp(fns[key], box.warmupMs);
    batch[key] = Math.max(1, Math.min(MAX_BATCH, Math.floor(BATCH_TARGET_US / estimate)));
  }
  const rounds = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  const iterations = Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
  const roundMs = box.boxMs / box.rounds;
  for (let r = 0; r < box.rounds; r++) {
    for (let j = 0; j < keys.length; j++) {
      const key = keys[(r + j) % keys.length];
      const sample = timeRound(fns[key], { batch: batch[key], ms: roundMs });
      rounds[key].push((sample.ms * 1000) / sample.iterations);
      iterations[key] += sample.iterations;
    }
  }
  const result = {} as Record<K, Measurement>;
  for (const key of keys) {
    result[key] = {
      usPerOp: median(rounds[key]),
      iterations: iterations[key],
      rounds: rounds[key],
    };
  }
  return result;
}
