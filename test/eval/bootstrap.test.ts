import { describe, expect, it } from 'vitest';
import { bootstrapCI, bootstrapMeans, pairedTest, seededRandom } from '../../activities/evaluation/bootstrap.ts';

/** n Bernoulli(p) draws from a seeded generator. */
function bernoulli(n: number, p: number, seed: number): Float64Array {
  const r = seededRandom(seed);
  return Float64Array.from({ length: n }, () => (r() < p ? 1 : 0));
}

describe('bootstrap confidence intervals', () => {
  it('95% intervals cover the true mean about 95% of the time', () => {
    // 200 synthetic evaluations of 300 queries with true recall 0.6.
    let covered = 0;
    const trials = 200;
    for (let t = 0; t < trials; t++) {
      const ci = bootstrapCI(bernoulli(300, 0.6, 1000 + t), { samples: 400, seed: t });
      if (ci.lo <= 0.6 && 0.6 <= ci.hi) covered++;
    }
    // Binomial(200, 0.95) lies in [181, 199] with probability > 0.999.
    expect(covered).toBeGreaterThanOrEqual(181);
    expect(covered).toBeLessThan(trials);
  });

  it('the interval brackets the point estimate and narrows with more queries', () => {
    const small = bootstrapCI(bernoulli(100, 0.3, 1));
    const large = bootstrapCI(bernoulli(10_000, 0.3, 1));
    expect(small.lo).toBeLessThanOrEqual(small.value);
    expect(small.hi).toBeGreaterThanOrEqual(small.value);
    expect(large.hi - large.lo).toBeLessThan((small.hi - small.lo) / 5);
    expect(Math.abs(large.value - 0.3)).toBeLessThan(0.02);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const v = bernoulli(500, 0.5, 7);
    expect(bootstrapCI(v, { seed: 3 })).toEqual(bootstrapCI(v, { seed: 3 }));
    expect(bootstrapCI(v, { seed: 3 })).not.toEqual(bootstrapCI(v, { seed: 4 }));
  });

  it('shares resamples across columns: identical columns get identical intervals', () => {
    const v = bernoulli(200, 0.4, 9);
    const [a, b] = bootstrapMeans([v, Float64Array.from(v)]);
    expect(a).toEqual(b);
  });

  it('a constant metric has a zero-width interval', () => {
    expect(bootstrapCI(new Float64Array(50).fill(1))).toEqual({ value: 1, lo: 1, hi: 1 });
  });
});

describe('paired test, fine-tuned vs base', () => {
  it('finds no difference between identical models', () => {
    const base = bernoulli(1000, 0.5, 11);
    const t = pairedTest(base, Float64Array.from(base));
    expect(t.diff).toEqual({ value: 0, lo: 0, hi: 0 });
    expect(t.pValue).toBe(1);
    expect(t.significant).toBe(false);
  });

  it('finds no significant difference between two equally good models', () => {
    const t = pairedTest(bernoulli(500, 0.5, 21), bernoulli(500, 0.5, 22));
    expect(t.significant).toBe(false);
    expect(t.diff.lo).toBeLessThan(0);
    expect(t.diff.hi).toBeGreaterThan(0);
    expect(t.pValue).toBeGreaterThan(0.05);
  });

  it('detects a real 10-point gain', () => {
    const base = bernoulli(1000, 0.5, 31);
    const r = seededRandom(32);
    // The fine-tuned model fixes 20% of base's misses and keeps its hits.
    const tuned = base.map((v) => (v === 1 || r() < 0.2 ? 1 : 0));
    const t = pairedTest(base, tuned);
    expect(t.significant).toBe(true);
    expect(t.diff.lo).toBeGreaterThan(0);
    expect(t.diff.value).toBeCloseTo(tuned.reduce((a, b) => a + b, 0) / 1000 - base.reduce((a, b) => a + b, 0) / 1000, 12);
    expect(t.pValue).toBeLessThan(0.01);
  });

  it('refuses systems scored on different queries', () => {
    expect(() => pairedTest([1, 0], [1])).toThrow(/different queries/);
  });
});
