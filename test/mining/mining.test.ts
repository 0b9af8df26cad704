import { describe, expect, it } from 'vitest';
import type { Embeddings } from '../../activities/embedding/encoder.ts';
import { type MiningInput, type MiningOptions, marginThreshold, mineHardNegatives } from '../../activities/embedding/mining.ts';
import { approximateTopK, chooseMethod, exactTopK } from '../../activities/embedding/search.ts';

// Crafted unit vectors in 3-d: chunk scores against the query are chosen by angle, so every rule
// of the miner can be checked by hand. Query q0 is written for chunk c-pos.
function unit(v: number[]): number[] {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}
function matrix(rows: number[][]): Embeddings {
  return { dim: rows[0]!.length, count: rows.length, data: Float32Array.from(rows.flatMap(unit)) };
}
/** A unit vector whose cosine with [1, 0, 0] is `s`. */
const at = (s: number, z = 0) => [s, Math.sqrt(1 - s * s) * Math.cos(z), Math.sqrt(1 - s * s) * Math.sin(z)];

const chunks = [
  { id: 'c-pos', text: '青葉川の水質は十四地点で測定する。', v: at(0.8) },
  { id: 'c-dup', text: '青葉川の水質は 十四地点で測定する。', v: at(0.8, 1) }, // same text up to spacing
  { id: 'c-near', text: '青葉川の水質は十四か所で測る。', v: at(0.79, 2) }, // 0.79 > 0.95 × 0.8
  { id: 'c-other-pos', text: '測定は毎月行う。', v: at(0.85, 3) }, // positive of a duplicate query row
  { id: 'c-n1', text: 'a', v: at(0.7, 4) },
  { id: 'c-n2', text: 'b', v: at(0.6, 5) },
  { id: 'c-n3', text: 'c', v: at(0.5, 6) },
  { id: 'c-n4', text: 'd', v: at(0.4, 7) },
  { id: 'c-n5', text: 'e', v: at(0.3, 8) },
];

function input(): MiningInput {
  return {
    queryIds: ['q0', 'q0-again', 'q-orphan'],
    queryTexts: ['水質は何地点で測定しているか', '水質は何地点で測定しているか？', '孤立した質問'],
    positiveIds: ['c-pos', 'c-other-pos', 'c-missing'],
    chunkIds: chunks.map((c) => c.id),
    chunkTexts: chunks.map((c) => c.text),
    queries: matrix([[1, 0, 0], [1, 0, 0], [1, 0, 0]]),
    chunks: matrix(chunks.map((c) => c.v)),
  };
}

const base: MiningOptions = { numNegatives: 3, relativeMargin: 0.05, rangeMin: 0, samplingStrategy: 'top', seed: 1 };
const ids = (rows: number[]) => rows.map((r) => chunks[r]!.id);

describe('mineHardNegatives', () => {
  it('never picks the positive, a duplicate of it, or a positive of the same query; the guard drops near-duplicates', async () => {
    const { rows, stats } = await mineHardNegatives(input(), base);
    const q0 = rows.find((r) => r.query === 0)!;
    expect(ids(q0.negatives)).toEqual(['c-n1', 'c-n2', 'c-n3']);
    expect(q0.positiveScore).toBeCloseTo(0.8, 5);
    // q0-again shares q0's normalised text: c-pos (and its duplicate) are its positives too.
    const again = rows.find((r) => r.query === 1)!;
    expect(ids(again.negatives)).not.toContain('c-pos');
    expect(ids(again.negatives)).not.toContain('c-dup');
    expect(stats.removedDuplicates).toBeGreaterThanOrEqual(2); // c-dup, for both rows
    expect(stats.removedByMargin).toBeGreaterThanOrEqual(1); // c-near for q0
    expect(stats.queriesWithoutPositive).toBe(1);
    expect(stats.queriesComplete).toBe(2);
    expect(stats.scores.positive.count).toBe(2);
  });

  it('without the guard the near-duplicate is the hardest negative (the guard is what removes it)', async () => {
    const { rows } = await mineHardNegatives(input(), { ...base, relativeMargin: undefined });
    expect(ids(rows[0]!.negatives)[0]).toBe('c-near');
  });

  it('rank range and random sampling choose among the eligible candidates only, deterministically', async () => {
    const ranged = await mineHardNegatives(input(), { ...base, numNegatives: 2, rangeMin: 1, rangeMax: 4 });
    expect(ids(ranged.rows[0]!.negatives)).toEqual(['c-n2', 'c-n3']);
    const opts: MiningOptions = { ...base, numNegatives: 2, samplingStrategy: 'random', rangeMax: 5 };
    const a = await mineHardNegatives(input(), opts);
    const b = await mineHardNegatives(input(), opts);
    expect(a.rows[0]!.negatives).toEqual(b.rows[0]!.negatives);
    for (const n of ids(a.rows[0]!.negatives)) expect(['c-n1', 'c-n2', 'c-n3', 'c-n4', 'c-n5']).toContain(n);
    // Best first, whichever were drawn.
    expect(a.rows[0]!.negativeScores[0]).toBeGreaterThanOrEqual(a.rows[0]!.negativeScores[1]!);
  });

  it('counts a query as short when the guard leaves too few candidates', async () => {
    const { stats, rows } = await mineHardNegatives(input(), { ...base, numNegatives: 3, relativeMargin: 0.45 });
    // Threshold 0.55 × 0.8 = 0.44: only c-n4 (0.4) and c-n5 (0.3) survive for q0.
    expect(ids(rows[0]!.negatives)).toEqual(['c-n4', 'c-n5']);
    expect(stats.queriesShort).toBeGreaterThanOrEqual(1);
  });

  it('fillShort random tops a short query up from below every searched candidate and its margin, deterministically', async () => {
    // rangeMax 2 searches the 3 positives and 3 more (c-near, c-n1, c-n2); margin 0.2 leaves only c-n2.
    const opts: MiningOptions = { ...base, numNegatives: 2, rangeMax: 2, relativeMargin: 0.2 };
    const short = await mineHardNegatives(input(), opts);
    expect(ids(short.rows[0]!.negatives)).toEqual(['c-n2']);
    // minScore 0.45 leaves c-n3 as the only unsearched chunk that may fill.
    const filled = await mineHardNegatives(input(), { ...opts, minScore: 0.45, fillShort: 'random' });
    expect(ids(filled.rows[0]!.negatives)).toEqual(['c-n2', 'c-n3']);
    expect(filled.stats.filledAtRandom).toBeGreaterThanOrEqual(1);
    const drawn = await mineHardNegatives(input(), { ...opts, fillShort: 'random' });
    const again = await mineHardNegatives(input(), { ...opts, fillShort: 'random' });
    expect(drawn.rows[0]!.negatives).toEqual(again.rows[0]!.negatives);
    expect(ids(drawn.rows[0]!.negatives.slice(1))).toHaveLength(1);
    expect(['c-n3', 'c-n4', 'c-n5']).toContain(ids(drawn.rows[0]!.negatives)[1]);
    // Nothing eligible anywhere: the query stays short rather than taking a near-duplicate.
    const none = await mineHardNegatives(input(), { ...opts, minScore: 0.59, fillShort: 'random' });
    expect(ids(none.rows[0]!.negatives)).toEqual(['c-n2']);
    expect(none.stats.queriesShort).toBeGreaterThanOrEqual(1);
  });

  it('the margin threshold holds for negative positive scores too', () => {
    expect(marginThreshold(0.8, { relativeMargin: 0.05 })).toBeCloseTo(0.76);
    expect(marginThreshold(-0.2, { relativeMargin: 0.05 })).toBeCloseTo(-0.21);
    expect(marginThreshold(0.8, { absoluteMargin: 0.1 })).toBeCloseTo(0.7);
    // Both: the stricter bound.
    expect(marginThreshold(0.8, { absoluteMargin: 0.01, relativeMargin: 0.05 })).toBeCloseTo(0.76);
    expect(marginThreshold(0.8, {})).toBe(Number.POSITIVE_INFINITY);
  });

  it('absoluteMargin, maxScore and minScore drop candidates as sentence-transformers does', async () => {
    // positive 0.8: absoluteMargin 0.15 keeps scores ≤ 0.65 (c-n2 0.6 onwards).
    const abs = await mineHardNegatives(input(), { ...base, relativeMargin: undefined, absoluteMargin: 0.15 });
    expect(ids(abs.rows[0]!.negatives)).toEqual(['c-n2', 'c-n3', 'c-n4']);
    const bounded = await mineHardNegatives(input(), { ...base, relativeMargin: undefined, maxScore: 0.65, minScore: 0.45 });
    expect(ids(bounded.rows[0]!.negatives)).toEqual(['c-n2', 'c-n3']);
    expect(bounded.stats.removedByScore).toBeGreaterThanOrEqual(3); // c-near, c-n1 above; c-n4, c-n5 below (for q0)
    expect(bounded.stats.queriesShort).toBeGreaterThanOrEqual(1);
  });

  it('derives rangeMax as sentence-transformers does: tenfold room only when a filter may remove candidates', async () => {
    // 3 positives at most (q0 and q0-again share their text; c-dup is c-pos's text), 3 negatives.
    expect((await mineHardNegatives(input(), base)).stats.rangeMax).toBe(0 + 10 * 3 + 3);
    expect((await mineHardNegatives(input(), { ...base, relativeMargin: undefined })).stats.rangeMax).toBe(0 + 3 + 3);
    expect((await mineHardNegatives(input(), { ...base, rangeMin: 1, rangeMax: 7 })).stats.rangeMax).toBe(7);
  });
});

describe('exactTopK', () => {
  it('matches brute force when blocked over queries and corpus, and pads with -1 past the corpus', async () => {
    let s = 7;
    const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
    const q = matrix(Array.from({ length: 37 }, () => [rand(), rand(), rand(), rand()]));
    const c = matrix(Array.from({ length: 301 }, () => [rand(), rand(), rand(), rand()]));
    const k = 5;
    const got = await exactTopK(q, c, k, { maxBlockScores: 500 }); // tiny blocks: many merges
    for (let i = 0; i < q.count; i++) {
      const want = Array.from({ length: c.count }, (_, j) => {
        let d = 0;
        for (let x = 0; x < 4; x++) d += q.data[i * 4 + x]! * c.data[j * 4 + x]!;
        return [d, j] as const;
      })
        .sort((a, b) => b[0] - a[0])
        .slice(0, k);
      expect(Array.from(got.indices.subarray(i * k, i * k + k))).toEqual(want.map((w) => w[1]));
    }
    const small = await exactTopK(q, matrix([[1, 0, 0, 0], [0, 1, 0, 0]]), 4);
    expect(Array.from(small.indices.subarray(2, 4))).toEqual([-1, -1]);
    expect(small.scores[3]).toBe(-Infinity);
  });
});

describe('approximateTopK (usearch HNSW)', () => {
  it('returns inner-product scores and finds nearly all of the exact top-k', async () => {
    let s = 11;
    const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
    const vec = () => Array.from({ length: 16 }, rand);
    const q = matrix(Array.from({ length: 50 }, vec));
    const c = matrix(Array.from({ length: 2000 }, vec));
    const k = 10;
    const exact = await exactTopK(q, c, k);
    const approx = await approximateTopK(q, c, k);
    let found = 0;
    for (let i = 0; i < q.count; i++) {
      const want = new Set(exact.indices.subarray(i * k, i * k + k));
      for (let j = 0; j < k; j++) if (want.has(approx.indices[i * k + j]!)) found++;
    }
    expect(found / (q.count * k)).toBeGreaterThan(0.95);
    expect(approx.scores[0]).toBeCloseTo(exact.scores[0]!, 4);
  });

  it('is chosen only above the exact-search size limit', () => {
    expect(chooseMethod(30_000, 10_000)).toBe('exact');
    expect(chooseMethod(1_000_000, 1_000_000)).toBe('approximate');
    expect(chooseMethod(10, 10, { method: 'approximate' })).toBe('approximate');
  });
});
