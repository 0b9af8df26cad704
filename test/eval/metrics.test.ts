import { describe, expect, it } from 'vitest';
import {
  METRIC_NAMES,
  accuracyAt,
  accuracyCurve,
  averagePrecisionAt,
  firstRelevantRank,
  mrrAt,
  ndcgAt,
  queryMetrics,
  recallAt,
} from '../../activities/evaluation/metrics.ts';
import { MetricsJson } from '../../activities/evaluation/metricsJson.ts';

const rel = (...ids: string[]) => new Set(ids);
const log2 = Math.log2;

describe('retrieval metrics on hand-computed rankings', () => {
  it('one relevant chunk at rank 3', () => {
    const ranking = ['a', 'b', 'c', 'd', 'e'];
    const m = queryMetrics(ranking, rel('c'));
    expect(m['accuracy@1']).toBe(0);
    expect(m['accuracy@5']).toBe(1);
    expect(m['accuracy@10']).toBe(1);
    // One relevant chunk: recall@k is the hit rate.
    expect([m['recall@1'], m['recall@5'], m['recall@10']]).toEqual([0, 1, 1]);
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
    expect(accuracyAt(ranking, relevant, 1)).toBe(0);
    // accuracy@k is a hit rate: any relevant chunk in the top k answers the question.
    expect(accuracyAt(ranking, relevant, 2)).toBe(1);
    // recall@k is the share of the relevant chunks in the top k (as InformationRetrievalEvaluator has it).
    expect(recallAt(ranking, relevant, 1)).toBe(0);
    expect(recallAt(ranking, relevant, 2)).toBeCloseTo(1 / 3, 12);
    expect(recallAt(ranking, relevant, 10)).toBeCloseTo(2 / 3, 12);
    expect(queryMetrics(ranking, relevant)).toMatchObject({ 'accuracy@5': 1, 'recall@5': 2 / 3 });
    expect(mrrAt(ranking, relevant, 10)).toBeCloseTo(0.5, 12);
    const dcg = 1 / log2(3) + 1 / log2(5);
    const idcg = 1 / log2(2) + 1 / log2(3) + 1 / log2(4);
    expect(ndcgAt(ranking, relevant, 10)).toBeCloseTo(dcg / idcg, 12);
    // AP: (1/2 + 2/4) / 3 relevant.
    expect(averagePrecisionAt(ranking, relevant, 100)).toBeCloseTo((0.5 + 0.5) / 3, 12);
  });

  it('cut-offs: a hit at rank 11 counts for accuracy@50, recall@50 and MAP@100 only', () => {
    const ranking = [...Array.from({ length: 10 }, (_, i) => `n${i}`), 'R'];
    const m = queryMetrics(ranking, rel('R'));
    expect(m['accuracy@10']).toBe(0);
    expect(m['recall@10']).toBe(0);
    expect(m['mrr@10']).toBe(0);
    expect(m['ndcg@10']).toBe(0);
    expect(m['accuracy@50']).toBe(1);
    expect(m['recall@50']).toBe(1);
    expect(m['map@100']).toBeCloseTo(1 / 11, 12);
  });

  it('MAP@100 normalises by min(|relevant|, 100)', () => {
    const relevant = new Set(Array.from({ length: 150 }, (_, i) => `r${i}`));
    const ranking = Array.from({ length: 100 }, (_, i) => `r${i}`);
    expect(averagePrecisionAt(ranking, relevant, 100)).toBeCloseTo(1, 12);
  });

  it('accuracy curve from first relevant ranks', () => {
    expect(accuracyCurve([1, 3, null, 2], 3)).toEqual([0.25, 0.5, 0.75]);
    expect(accuracyCurve([], 2)).toEqual([0, 0]);
  });
});

describe('metrics.json versions', () => {
  const iv = (v: number) => ({ value: v, lo: v - 0.1, hi: v + 0.1 });
  const paired = (v: number) => ({ diff: iv(v), pValue: 0.01, significant: true });
  const meta = {
    inputs: {},
    models: {},
    corpus: { chunks: 10, documents: 1 },
    evalSets: { human: { queries: 5, reranked: 0, skipped: 0, relevantPerQuery: 1.2 } },
    bootstrap: { samples: 100, seed: 1, alpha: 0.05 },
    throughput: { queriesPerSecond: 1, queries: 5, seconds: 5 },
    definitions: {},
  };
  // As version 1 wrote it: no schemaVersion, the hit rate under recall@k, no true recall.
  const v1Table = { 'recall@1': iv(0.4), 'recall@5': iv(0.6), 'recall@10': iv(0.7), 'recall@50': iv(0.9), 'mrr@10': iv(0.5), 'ndcg@10': iv(0.55), 'map@100': iv(0.5) };
  const v1Paired = Object.fromEntries(Object.keys(v1Table).map((k) => [k, paired(0.1)]));
  const v1 = {
    human: { base: v1Table, finetuned: v1Table },
    pairedTests: { human: [{ a: 'base', b: 'finetuned', n: 5, metrics: v1Paired }] },
    latency: { 'embed+search': {}, rerank: {} },
    gate: { metric: 'recall@1', evalSet: 'human', minGain: 0, diff: iv(0.1), passed: true, message: 'ok' },
    meta,
  };

  it('reads a version-1 file: its recall@k were hit rates and are read as accuracy@k; true recall is absent', () => {
    const m = MetricsJson.parse(v1);
    expect(m.schemaVersion).toBeUndefined();
    expect(m.human!['base']!['accuracy@1']).toEqual(iv(0.4));
    expect(m.human!['base']!['accuracy@50']).toEqual(iv(0.9));
    expect(m.human!['base']!['recall@1']).toBeUndefined();
    expect(m.pairedTests.human![0]!.metrics['accuracy@10']).toEqual(paired(0.1));
    expect(m.gate!.metric).toBe('recall@1'); // as written; its figures are stored, not recomputed
  });

  it('reads a version-2 file as written: recall@k is true recall next to accuracy@k', () => {
    const table = Object.fromEntries(METRIC_NAMES.map((k, i) => [k, iv(i / 20)]));
    const v2 = { ...v1, schemaVersion: 2, human: { base: table }, pairedTests: {}, gate: { ...v1.gate, metric: 'recall@1' } };
    const m = MetricsJson.parse(v2);
    expect(m.human!['base']).toEqual(table);
    expect(m.gate!.metric).toBe('recall@1');
    // A version-2 table missing a hit rate is an error, not silently taken for version 1.
    const { 'accuracy@5': _, ...partial } = table;
    expect(MetricsJson.safeParse({ ...v2, human: { base: partial } }).success).toBe(false);
  });
});
