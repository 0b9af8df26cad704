import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readParquet } from '../../artifacts/parquet.ts';
import type { LocalStore } from '../../artifacts/store.ts';
import { QualityGateError } from '../../core/errors.ts';
import { evaluate } from '../../activities/evaluate.ts';
import { METRIC_NAMES } from '../../activities/evaluation/metrics.ts';
import type { MetricsJson } from '../../activities/evaluation/metricsJson.ts';
import { stringColumn } from '../../activities/evaluation/tables.ts';
import { importQuestions } from '../../activities/importQuestions.ts';
import { filesArtifact, runStage, tempStore } from '../support/runStage.ts';
import { EXAMPLES, baseModel, ingestDir, sentenceQueries, windowChunks } from './fixtures.ts';
import { PER_QUERY_FILE, readMetrics } from '../../activities/artifactKinds/evaluationArtifact.ts';

let store: LocalStore;
let model: string;
let chunks: string;
let evalQueries: string;
let evalQuestions: string;

beforeAll(async () => {
  store = await tempStore('ef-eval-evaluate-');
  model = await baseModel(store);
  const documents = await ingestDir(store, join(EXAMPLES, 'corpus'));
  chunks = await windowChunks(store, documents, 160, 80);
  evalQueries = await sentenceQueries(store, chunks, 30);
  const questions = await filesArtifact(store, join(EXAMPLES, 'questions.jsonl'), 'file');
  evalQuestions = (await runStage(importQuestions, { store, inputs: { questions, documents, chunks } })).digest;
});

async function metricsOf(digest: string): Promise<MetricsJson> {
  return readMetrics(await store.open(digest));
}

describe('evaluate', () => {
  it('scores base on generated and human eval sets with CIs, per-query Parquet and latency', async () => {
    const { digest, stats } = await runStage(evaluate, {
      store,
      params: { bootstrapSamples: 200 },
      inputs: { base: model, chunks, evalQueries, evalQuestions },
    });
    const m = await metricsOf(digest);
    expect(Object.keys(m.generated!)).toEqual(['base', 'bm25', 'base+bm25']);
    expect(Object.keys(m.human!)).toEqual(['base', 'bm25', 'base+bm25']);
    for (const set of [m.generated!, m.human!]) {
      const b = set['base']!;
      for (const name of METRIC_NAMES) {
        expect(b[name]!.lo).toBeLessThanOrEqual(b[name]!.value);
        expect(b[name]!.hi).toBeGreaterThanOrEqual(b[name]!.value);
        expect(b[name]!.value).toBeGreaterThanOrEqual(0);
        expect(b[name]!.value).toBeLessThanOrEqual(1);
      }
      expect(b['accuracy@1'].value).toBeLessThanOrEqual(b['accuracy@5'].value);
      expect(b['accuracy@5'].value).toBeLessThanOrEqual(b['accuracy@10'].value);
      expect(b['accuracy@10'].value).toBeLessThanOrEqual(b['accuracy@50'].value);
      // True recall never exceeds the hit rate.
      for (const k of [1, 5, 10, 50] as const) expect(b[`recall@${k}`]!.value).toBeLessThanOrEqual(b[`accuracy@${k}`].value);
    }
    // One relevant chunk per generated query: recall@k is the hit rate. Human questions whose answer
    // spans two overlapping chunks have several: there, finding one of two is half a recall.
    for (const k of [1, 5, 10, 50] as const) expect(m.generated!['base']![`recall@${k}`]!.value).toBeCloseTo(m.generated!['base']![`accuracy@${k}`].value, 10);
    expect(m.meta.evalSets.human!.relevantPerQuery).toBeGreaterThan(1);
    const human = m.human!['base']!;
    expect(([1, 5, 10, 50] as const).filter((k) => human[`recall@${k}`]!.value < human[`accuracy@${k}`].value).length).toBeGreaterThan(0);
    // A query that is a chunk's own first sentence is easy even for the base model.
    expect(m.generated!['base']!['accuracy@10'].value).toBeGreaterThan(0.5);
    // BM25 finds these Japanese questions by the words they share with their passage, which an
    // English base model cannot read: the verdict says the base loses to lexical search.
    expect(m.human!['bm25']!['accuracy@1'].value).toBeGreaterThan(m.human!['base']!['accuracy@1'].value + 0.3);
    expect(m.verdict?.lexical?.human).toMatchObject({ model: 'base', versusBm25: 'worse' });
    expect(stats['vsBm25.human']).toBe('worse');
    expect(m.meta.evalSets).toMatchObject({ generated: { queries: 30 }, human: { queries: 87 } });
    expect(m.latency['embed+search'].base!.n).toBe(117);
    expect(m.latency['embed+search'].base!.p50).toBeGreaterThan(0);
    expect(m.latency['embed+search'].base!.p99).toBeGreaterThanOrEqual(m.latency['embed+search'].base!.p50);
    expect(m.meta.inputs).toMatchObject({ base: model, chunks, evalQueries, evalQuestions });
    expect(stats['human.queries']).toBe(87);
    expect(stats['embeddingsComputed']).toBeGreaterThan(0);

    const where = (await store.open(digest)).file(PER_QUERY_FILE);
    const t = await readParquet(where);
    // One row per system (base, bm25, base+bm25) and query.
    expect(t.numRows).toBe(3 * 117);
    expect(new Set(stringColumn(t, 'system', where))).toEqual(new Set(['base', 'bm25', 'base+bm25']));
    expect(new Set(stringColumn(t, 'query_id', where).filter((q) => q.startsWith('q')))).toHaveLength(87);
  });

  it('latency from a sample of queries: the same metrics, the untimed queries have no latency', async () => {
    const all = await runStage(evaluate, { store, params: { bootstrapSamples: 200 }, inputs: { base: model, chunks, evalQueries, evalQuestions } });
    const sampled = await runStage(evaluate, {
      store,
      params: { bootstrapSamples: 200, latencyQueries: 10 },
      inputs: { base: model, chunks, evalQueries, evalQuestions },
    });
    const [a, b] = [await metricsOf(all.digest), await metricsOf(sampled.digest)];
    expect(b.latency['embed+search'].base!.n).toBe(10);
    // The same model again: chunks and queries all come from the embedding memo.
    expect(sampled.stats['embeddingsComputed']).toBe(0);
    expect(b.generated).toEqual(a.generated);
    expect(b.human).toEqual(a.human);
    const where = (await store.open(sampled.digest)).file(PER_QUERY_FILE);
    const column = (await readParquet(where)).getChild('latency_ms')!;
    // base, bm25 and base+bm25 per query; only base's embed+search is timed, and only for the sample.
    expect(column.length).toBe(3 * 117);
    expect(column.nullCount).toBe(107 + 2 * 117);
  });

  it('identical base and fine-tuned models: no difference, and the quality gate fails after publishing', async () => {
    const err = await runStage(evaluate, {
      store,
      params: { bootstrapSamples: 200, gate: { metric: 'ndcg@10' } },
      inputs: { base: model, finetuned: model, chunks, evalQuestions },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(QualityGateError);
    expect(err.message).toMatch(/not better than base on human ndcg@10/);
    const digest = /evaluation artifact ([0-9a-f]{64})/.exec(err.where)![1]!;
    // The evidence was kept: the evaluation is in the store, with the paired test that failed the gate.
    const m = await metricsOf(digest);
    expect(m.gate).toMatchObject({ passed: false, evalSet: 'human', metric: 'ndcg@10' });
    const cmp = m.pairedTests.human!.find((c) => c.a === 'base' && c.b === 'finetuned')!;
    for (const name of METRIC_NAMES) {
      expect(cmp.metrics[name]!.diff).toEqual({ value: 0, lo: 0, hi: 0 });
      expect(cmp.metrics[name]!.pValue).toBe(1);
      expect(cmp.metrics[name]!.significant).toBe(false);
    }
    expect(m.human!['finetuned']).toEqual(m.human!['base']);
  });

  it("a failed gate's evidence has an ordinary artifact's lineage but is not cached: a rerun fails again", async () => {
    const params = { bootstrapSamples: 100, maxQueries: 20, latencyQueries: 5 };
    const inputs = { base: model, finetuned: model, chunks, evalQuestions };
    const ordinary = await runStage(evaluate, { store, params, inputs });
    const gated = { store, params: { ...params, gate: { metric: 'ndcg@10' } }, inputs };
    const evidenceOf = async (err: unknown) => {
      expect(err).toBeInstanceOf(QualityGateError);
      return store.readManifest(/evaluation artifact ([0-9a-f]{64})/.exec((err as QualityGateError).where!)![1]!);
    };
    const { lineage } = await evidenceOf(await runStage(evaluate, gated).catch((e) => e));
    expect(Object.keys(lineage).sort()).toEqual(Object.keys(ordinary.manifest.lineage).sort());
    expect(lineage).toMatchObject({ stageKind: 'evaluate', codeFingerprint: 'test', runId: 'test', inputs, params: { gate: { metric: 'ndcg@10' } } });
    expect(lineage.cacheKey).toMatch(/^[0-9a-f]{64}$/);
    expect(lineage.cacheKey).not.toBe(ordinary.manifest.lineage.cacheKey);
    // The ordinary evaluation is served from the cache next time; the failed gate's evidence is not.
    expect(await store.getCache(ordinary.manifest.lineage.cacheKey!)).toBe(ordinary.digest);
    expect(await store.getCache(lineage.cacheKey!)).toBeUndefined();
    const again = await evidenceOf(await runStage(evaluate, gated).catch((e) => e));
    expect(again.lineage.cacheKey).toBe(lineage.cacheKey);
    expect(await store.getCache(lineage.cacheKey!)).toBeUndefined();
  });
});
