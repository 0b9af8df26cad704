import { describe, expect, it } from 'vitest';
import { summarizeLatency } from '../../activities/evaluation/latency.ts';

describe('latency percentiles', () => {
  it('p50/p95/p99 interpolate between ranks', () => {
    // 1..100 ms in shuffled order.
    const ms = Array.from({ length: 100 }, (_, i) => ((i * 37) % 100) + 1);
    const s = summarizeLatency(ms);
    expect(s.n).toBe(100);
    expect(s.p50).toBeCloseTo(50.5, 12);
    expect(s.p95).toBeCloseTo(95.05, 12);
    expect(s.p99).toBeCloseTo(99.01, 12);
    expect(s.max).toBe(100);
    expect(s.mean).toBeCloseTo(50.5, 12);
  });

  it('one sample is every percentile', () => {
    expect(summarizeLatency([7])).toMatchObject({ p50: 7, p95: 7, p99: 7, max: 7 });
  });
});
