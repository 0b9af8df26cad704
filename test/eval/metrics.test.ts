import { describe, expect, it } from 'vitest';
import {
  averagePrecisionAt,
  firstRelevantRank,
  mrrAt,
  ndcgAt,
  queryMetrics,
  recallAt,
  recallCurve,
} from '../../activities/evaluation/metrics.ts';

const rel = (...ids: string[]) => new Set(ids);
const log2 = Math.log2;

describe('retrieval metrics on hand-computed rankings', () => {
  it('one relevant chunk at rank 3', () => {
    const ranking = ['a', 'b', 'c', 'd', 'e'];
    const m = queryMetrics(ranking, rel('c'));
    expect(m['recall@1']).toBe(0);
    expect(m['recall@5']).toBe(1);
    expect(m['recall@10']).toBe(1);
    expect(m['mrr@10']).toBeCloseTo(1 / 3, 12);
    // DCG = 1/log2(4) = 0.5, IDCG = 1/log2(2) = 1.
    expect(m['ndcg@10']).toBeCloseTo(0.5, 12);
    // One hit at rank 3: precision 1/3, over min(1, 100) relevant.
    expect(m['map@100']).toBeCloseTo(1 / 3, 12);
  });

  it('relevant chunk first: every metric is 1', () => {
    const m = queryMetrics(['x', 'y'], rel('x'));
    for (const v of Object.values(m)) expect(v).toBe(1);
  });

  it('no relevant chunk retrieved scores 0 everywhere', () => {
    const ranking = Array.from({ length: 100 }, (_, i) => `c${i}`);
    const m = queryMetrics(ranking, rel('missing'));
    for (const v of Object.values(m)) expect(v).toBe(0);
    expect(firstRelevantRank(ranking, rel('missing'))).toBeNull();
  });

  it('a query with no relevant chunk at all scores 0, not NaN', () => {
    const m = queryMetrics(['a', 'b'], rel());
    for (const v of Object.values(m)) expect(v).toBe(0);
  });

  it('several relevant chunks (ranks 2 and 4 of 3 relevant)', () => {
    const ranking = ['a', 'R1', 'b', 'R2', 'c', 'd'];
    const relevant = rel('R1', 'R2', 'R3');
    expect(recallAt(ranking, relevant, 1)).toBe(0);
    // Recall@k is a hit rate: any relevant chunk in the top k answers the question.
    expect(recallAt(ranking, relevant, 2)).toBe(1);
    expect(mrrAt(ranking, relevant, 10)).toBeCloseTo(0.5, 12);
    const dcg = 1 / log2(3) + 1 / log2(5);
    const idcg = 1 / log2(2) + 1 / log2(3) + 1 / log2(4);
    expect(ndcgAt(ranking, relevant, 10)).toBeCloseTo(dcg / idcg, 12);
    // AP: (1/2 + 2/4) / 3 relevant.
    expect(averagePrecisionAt(ranking, relevant, 100)).toBeCloseTo((0.5 + 0.5) / 3, 12);
  });

  it('cut-offs: a hit at rank 11 counts for recall@50 and MAP@100 only', () => {
    const ranking = [...Array.from({ length: 10 }, (_, i) => `n${i}`), 'R'];
    const m = queryMetrics(ranking, rel('R'));
    expect(m['recall@10']).toBe(0);
    expect(m['mrr@10']).toBe(0);
    expect(m['ndcg@10']).toBe(0);
    expect(m['recall@50']).toBe(1);
    expect(m['map@100']).toBeCloseTo(1 / 11, 12);
  });

  it('MAP@100 normalises by min(|relevant|, 100)', () => {
    const relevant = new Set(Array.from({ length: 150 }, (_, i) => `r${i}`));
    const ranking = Array.from({ length: 100 }, (_, i) => `r${i}`);
    expect(averagePrecisionAt(ranking, relevant, 100)).toBeCloseTo(1, 12);
  });

  it('recall curve from first relevant ranks', () => {
    expect(recallCurve([1, 3, null, 2], 3)).toEqual([0.25, 0.5, 0.75]);
    expect(recallCurve([], 2)).toEqual([0, 0]);
  });
});
