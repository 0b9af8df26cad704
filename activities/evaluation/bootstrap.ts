import { z } from 'zod';
import { quantileSorted } from './quantile.ts';

/**
 * Uncertainty for per-query metrics: percentile-bootstrap confidence intervals for a mean, and a
 * paired comparison of two systems on the same queries. Everything is seeded, so the same inputs
 * give the same intervals on every run and every machine (the evaluation artifact is cached and
 * compared by content).
 */

export const Interval = z.object({ value: z.number(), lo: z.number(), hi: z.number() });
export type Interval = z.infer<typeof Interval>;

export interface BootstrapOptions {
  /** Resamples; 1,000 gives percentile bounds stable to about ±0.005 on a 0–1 metric. */
  samples?: number;
  seed?: number;
  /** 0.05 → a 95% interval. */
  alpha?: number;
}

const DEFAULTS = { samples: 1000, seed: 42, alpha: 0.05 } as const;

/** mulberry32: a tiny, fast, well-mixed 32-bit PRNG; deterministic for a seed. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `k` of the indices 0..n-1 chosen uniformly by a seeded shuffle, ascending; all of them when k ≥ n. */
export function seededSample(n: number, k: number, seed: number): Int32Array {
  const idx = Int32Array.from({ length: n }, (_, i) => i);
  if (k >= n) return idx;
  const rand = seededRandom(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = idx[i]!;
    idx[i] = idx[j]!;
    idx[j] = t;
  }
  return idx.slice(0, k).sort();
}

function mean(values: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i]!;
  return values.length ? s / values.length : 0;
}

/**
 * Bootstrap intervals for the means of several per-query columns at once. All columns share the
 * same resamples of query indices, so the intervals of one system's metrics are consistent with
 * each other, and the cost is one index draw per resample whatever the number of metrics.
 */
export function bootstrapMeans(columns: ReadonlyArray<ArrayLike<number>>, opts: BootstrapOptions = {}): Interval[] {
  const { samples, seed, alpha } = { ...DEFAULTS, ...opts };
  const n = columns[0]?.length ?? 0;
  for (const c of columns) if (c.length !== n) throw new RangeError('bootstrapMeans: columns differ in length');
  if (n === 0) return columns.map(() => ({ value: 0, lo: 0, hi: 0 }));
  const rand = seededRandom(seed);
  const stats = columns.map(() => new Float64Array(samples));
  const sums = new Float64Array(columns.length);
  for (let b = 0; b < samples; b++) {
    sums.fill(0);
    for (let i = 0; i < n; i++) {
      const j = Math.floor(rand() * n);
      for (let c = 0; c < columns.length; c++) sums[c]! += columns[c]![j]!;
    }
    for (let c = 0; c < columns.length; c++) stats[c]![b] = sums[c]! / n;
  }
  return columns.map((col, c) => {
    const sorted = stats[c]!.sort();
    return { value: mean(col), lo: quantileSorted(sorted, alpha / 2), hi: quantileSorted(sorted, 1 - alpha / 2) };
  });
}

export function bootstrapCI(values: ArrayLike<number>, opts: BootstrapOptions = {}): Interval {
  return bootstrapMeans([values], opts)[0]!;
}

export const PairedTest = z.object({
  /** Queries both systems were scored on. */
  n: z.number().int().nonnegative(),
  /** mean(b) − mean(a), with its paired-bootstrap interval. */
  diff: Interval,
  /** Two-sided p-value of a sign-flip permutation test on the per-query differences. */
  pValue: z.number(),
  /** True when the interval of the difference excludes 0. */
  significant: z.boolean(),
});
export type PairedTest = z.infer<typeof PairedTest>;

/**
 * Compare system b with system a on the same queries. The interval resamples queries (keeping each
 * query's pair together, which removes the between-query variance both systems share); the p-value
 * comes from randomly swapping a and b per query (sign flips of the difference), which is exact
 * under the null of exchangeability. Identical systems give a zero difference and p = 1.
 */
export function pairedTest(a: ArrayLike<number>, b: ArrayLike<number>, opts: BootstrapOptions = {}): PairedTest {
  const { samples, seed, alpha } = { ...DEFAULTS, ...opts };
  if (a.length !== b.length) throw new RangeError('pairedTest: the two systems were scored on different queries');
  const n = a.length;
  const d = new Float64Array(n);
  for (let i = 0; i < n; i++) d[i] = b[i]! - a[i]!;
  const diff = bootstrapCI(d, { samples, seed, alpha });
  const observed = Math.abs(mean(d));
  // Differences are sums of fractions; compare with a tolerance so float noise never counts as "more extreme".
  const eps = 1e-12 * Math.max(1, observed);
  const rand = seededRandom(seed ^ 0x9e3779b9);
  let extreme = 0;
  for (let p = 0; p < samples; p++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += rand() < 0.5 ? d[i]! : -d[i]!;
    if (Math.abs(n ? s / n : 0) >= observed - eps) extreme++;
  }
  return {
    n,
    diff,
    pValue: (extreme + 1) / (samples + 1),
    significant: n > 0 && (diff.lo > 0 || diff.hi < 0),
  };
}
