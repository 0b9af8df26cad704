import { z } from 'zod';
import { quantileSorted, sortedCopy } from './quantile.ts';

export const LatencySummary = z.object({
  n: z.number().int().nonnegative(),
  mean: z.number(),
  p50: z.number(),
  p95: z.number(),
  p99: z.number(),
  max: z.number(),
});
export type LatencySummary = z.infer<typeof LatencySummary>;

/** Per-query latencies in milliseconds → mean, p50/p95/p99 and max (NaN fields when there are none). */
export function summarizeLatency(ms: ArrayLike<number>): LatencySummary {
  const sorted = sortedCopy(ms);
  const n = sorted.length;
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    n,
    mean: n ? sum / n : Number.NaN,
    p50: quantileSorted(sorted, 0.5),
    p95: quantileSorted(sorted, 0.95),
    p99: quantileSorted(sorted, 0.99),
    max: n ? sorted[n - 1]! : Number.NaN,
  };
}
