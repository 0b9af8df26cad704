import { z } from 'zod';
import { writeFileAtomic } from '../artifacts/fsutil.ts';
import { writeParquet } from '../artifacts/parquet.ts';
import type { ArtifactReader } from '../artifacts/store.ts';
import { InvalidInputError, QualityGateError } from '../core/errors.ts';
import { type StageContext, defineStage } from '../dsl/stage.ts';
import { METRICS_FILE, PER_QUERY_FILE, metricsText } from './artifactKinds/evaluationArtifact.ts';
import { readEvalSets } from './evaluation/evalSets.ts';
import { RANKING_DEPTH } from './evaluation/metrics.ts';
import {
  EvalSetName,
  type GateResult,
  type LatencyTable,
  METRIC_DEFINITIONS,
  METRICS_SCHEMA_VERSION,
  MetricName,
  type MetricsJson,
  type PairedComparison,
  type SetMetrics,
} from './evaluation/metricsJson.ts';
import { rankLexically } from './evaluation/lexicalRankings.ts';
import { Bm25Index } from './lexical/bm25.ts';
import { type ModelRankings, rankWithModel } from './evaluation/modelRankings.ts';
import { perQueryTable } from './evaluation/perQueryTable.ts';
import { orderSystems } from './evaluation/reportModel.ts';
import { rerankAll } from './evaluation/rerankSystems.ts';
import { type GateSpec, type SystemScores, gateCheck, metricTable, pairedComparisons } from './evaluation/summary.ts';
import { devCheckOf, judge, verdictStats } from './evaluation/verdict.ts';
import { encodingNeeds, lexicalIndexBytes, onnxGraph, tableRows, vectorBytes } from './resourceEstimates.ts';

/**
 * The evaluation every run must answer: did the fine-tuned model beat the base model on this
 * domain, by how much, and is it as good as a reranker? Each model embeds the whole chunk corpus and
 * every query in batches, exact cosine search ranks the top 100, and a cross-encoder optionally
 * reranks base's (and fine-tuned's) top N. A sample of queries is also run one at a time, as a
 * search service would, for the latency percentiles. Metrics carry 95% bootstrap
 * intervals; paired tests say whether a difference is more than noise; latency is measured in this
 * process beside the quality numbers.
 */

const Params = z
  .object({
    rerankDepths: z.array(z.number().int().min(1).max(RANKING_DEPTH)).min(1).default([30, 50]).describe("Rerank base's top N for each N: one system 'base+rerank@N' each."),
    rerankFinetuned: z.boolean().default(true).describe("Also rerank the fine-tuned model's top max(rerankDepths)."),
    rerankMaxQueries: z.number().int().positive().optional().describe('Rerank only a seeded sample of this many queries per eval set (cross-encoders are slow on CPU).'),
    maxQueries: z.number().int().positive().optional().describe('Evaluate only a seeded sample of this many queries per eval set.'),
    lexical: z
      .boolean()
      .default(true)
      .describe(
        "Also score lexical search, no model ('bm25': BM25 over words and character bigrams), and each model fused with it " +
          "('base+bm25', 'finetuned+bm25'): the baseline a user has without embedflow, and a hybrid that may beat both.",
      ),
    variant: z.enum(['fp32', 'int8']).default('fp32').describe('Which ONNX graph of the models to run.'),
    batchSize: z.number().int().positive().default(32).describe('Most texts per onnxruntime call when embedding queries and chunks'),
    latencyQueries: z.number().int().min(0).default(200).describe('Queries timed one at a time (embed + search, as a search service would) for the latency percentiles, a seeded sample per model. Every query is scored; the rest are embedded in batches.'),
    bootstrapSamples: z.number().int().min(100).default(1000).describe('Bootstrap resamples of the queries behind each confidence interval'),
    seed: z.number().int().default(42).describe('Seed of the query samples and the bootstrap'),
    gate: z
      .object({
        metric: MetricName.default('ndcg@10').describe('The metric the gate compares'),
        evalSet: EvalSetName.optional().describe("Default: 'human' when human questions are wired in, else 'generated'."),
        minGain: z.number().default(0).describe("The gain's CI lower end must exceed this (0.01 = one point)."),
      })
      .strict()
      .optional()
      .describe('Fail (after publishing the evaluation) unless fine-tuned beats base beyond the CI.'),
  })
  .strict();
type Params = z.output<typeof Params>;

const INPUTS = {
  base: 'model',
  finetuned: 'model?',
  chunks: 'chunks',
  evalQueries: 'evalQueries?',
  evalQuestions: 'evalQuestions?',
  reranker: 'reranker?',
} as const;
type Ctx = StageContext<Params, typeof INPUTS>;

export const evaluate = defineStage({
  kind: 'evaluate',
  description: 'Accuracy@k, Recall@k, MRR, nDCG, MAP with bootstrap CIs for base vs fine-tuned vs reranked, with per-query latency.',
  params: Params,
  inputs: INPUTS,
  output: 'evaluation',
  defaults: { queue: 'cpu', startToCloseTimeout: '6h', heartbeatTimeout: '5m', retry: { maximumAttempts: 2 } },
  // The models embed one after the other (the larger session counts), the reranker after them; every
  // model's corpus vectors stay for the comparison.
  resources: (p, inputs) => {
    const models = [inputs.base, inputs.finetuned].filter((m) => m !== undefined);
    const largest = Math.max(...models.map((m) => onnxGraph(m, p.variant).bytes));
    return encodingNeeds(
      [{ bytes: largest }, ...(inputs.reranker ? [onnxGraph(inputs.reranker)] : [])],
      models.length * vectorBytes(tableRows(inputs.chunks)) + (p.lexical ? lexicalIndexBytes(tableRows(inputs.chunks)) : 0),
    );
  },
  async run(ctx) {
    const started = performance.now();
    const p = ctx.params;
    const { base, finetuned, chunks, evalQueries, evalQuestions, reranker } = ctx.inputs;
    const where = `stage "${ctx.stageId}" (evaluate)`;
    const gateSpec = checkWiring(ctx, where);
    const { corpus, sets } = await readEvalSets({ chunks, evalQueries, evalQuestions }, p, where);

    const rerankDepths = [...new Set(p.rerankDepths)].sort((a, b) => a - b);
    const queryCount = sets.reduce((s, e) => s + e.queryIds.length, 0);
    const models = [{ role: 'base' as const, model: base }, ...(finetuned ? [{ role: 'finetuned' as const, model: finetuned }] : [])];
    const rerankCount = reranker ? sets.reduce((s, e) => s + Math.min(e.queryIds.length, p.rerankMaxQueries ?? Infinity), 0) : 0;
    // A reranked query scores its whole candidate list: it counts as that many texts, so the bar
    // does not sit at 98% through the slowest part.
    const total = models.length * (corpus.ids.length + queryCount) + rerankCount * Math.max(...rerankDepths);
    let done = 0;
    const tick = (n: number, message: string) => {
      done += n;
      ctx.progress({ done, total, unit: 'texts', message });
    };

    const scores = new Map<EvalSetName, Map<string, SystemScores>>(sets.map((s) => [s.name, new Map()]));
    const latency: LatencyTable = { 'embed+search': {}, rerank: {} };
    const ranked: Partial<Record<'base' | 'finetuned', ModelRankings>> = {};
    const lexical = p.lexical ? new Bm25Index(corpus.texts) : undefined;
    if (lexical) for (const [set, s] of rankLexically(lexical, corpus, sets)) scores.get(set)!.set(s.system, s);
    for (const { role, model } of models) {
      const { variant, batchSize, latencyQueries, seed } = p;
      const r = await rankWithModel({ role, model, corpus, sets, variant, batchSize, latencyQueries, seed, store: ctx.store, signal: ctx.signal, tick, lexical });
      ranked[role] = r;
      for (const [set, s] of r.scores) scores.get(set)!.set(role, s);
      for (const [set, s] of r.hybridScores) scores.get(set)!.set(s.system, s);
      latency['embed+search'][role] = r.latency;
    }
    const rerankerName =
      reranker &&
      (await rerankAll({
        dir: reranker.dir,
        sets,
        corpus,
        candidates: { base: ranked.base!.candidates, finetuned: ranked.finetuned?.candidates },
        depths: rerankDepths,
        withFinetuned: Boolean(finetuned) && p.rerankFinetuned,
        scores,
        latency,
        tick,
        signal: ctx.signal,
        maxQueries: p.rerankMaxQueries,
        seed: p.seed,
      }));

    const boot = { samples: p.bootstrapSamples, seed: p.seed, alpha: 0.05 };
    const metrics: Partial<Record<EvalSetName, SetMetrics>> = {};
    const pairedTests: Partial<Record<EvalSetName, PairedComparison[]>> = {};
    for (const set of sets) {
      const bySystem = scores.get(set.name)!;
      metrics[set.name] = Object.fromEntries(orderSystems(bySystem.keys()).map((name) => [name, metricTable(bySystem.get(name)!, boot)]));
      pairedTests[set.name] = pairedComparisons(bySystem, rerankDepths, boot);
    }
    const gated = gateSpec && pairedTests[gateSpec.evalSet]!.find((c) => c.a === 'base' && c.b === 'finetuned')!;
    const gate: GateResult | null = gateSpec && gated ? gateCheck(gateSpec, gated) : null;

    const seconds = (performance.now() - started) / 1000;
    const meta: MetricsJson['meta'] = {
      inputs: Object.fromEntries(
        Object.entries(ctx.inputs).flatMap(([name, r]) => (r ? [[name, (r as ArtifactReader).digest]] : [])),
      ),
      models: {
        ...Object.fromEntries(Object.entries(ranked).map(([role, r]) => [role, r.model])),
        ...(reranker && rerankerName ? { reranker: { name: rerankerName, digest: reranker.digest } } : {}),
      },
      corpus: { chunks: corpus.ids.length, documents: corpus.documents },
      evalSets: Object.fromEntries(
        sets.map((s) => [
          s.name,
          {
            queries: s.queryIds.length,
            reranked: reranker ? Math.min(s.queryIds.length, p.rerankMaxQueries ?? Infinity) : 0,
            skipped: s.skipped,
            relevantPerQuery: Number((s.relevant.reduce((a, r) => a + r.size, 0) / s.relevant.length).toFixed(4)),
          },
        ]),
      ),
      bootstrap: boot,
      throughput: { queries: queryCount, seconds: Number(seconds.toFixed(3)), queriesPerSecond: Number((queryCount / seconds).toFixed(3)) },
      definitions: METRIC_DEFINITIONS,
    };
    // The train stage's dev evaluations (meta.evals) say whether fine-tuning helped on its own dev split.
    const verdict = judge({ ...metrics, pairedTests, meta }, finetuned && devCheckOf(finetuned.manifest.meta['evals'], finetuned.manifest.meta['merge']));
    const result: MetricsJson = { schemaVersion: METRICS_SCHEMA_VERSION, ...metrics, pairedTests, latency, gate, verdict, meta };
    await writeFileAtomic(await ctx.out.file(METRICS_FILE), metricsText(result));
    const perQuery = perQueryTable(sets, scores);
    await writeParquet(await ctx.out.file(PER_QUERY_FILE), perQuery);

    const stats: Record<string, number | string | boolean> = {
      // First: `status` shows a stage's first stats, and this is what a person must not miss.
      ...verdictStats(verdict),
      chunks: corpus.ids.length,
      corpusMemoHits: Object.values(ranked).reduce((n, r) => n + r.corpusMemoHits, 0),
      embeddingsComputed: Object.values(ranked).reduce((n, r) => n + r.embeddingsComputed, 0),
      seconds: Number(seconds.toFixed(1)),
    };
    for (const set of sets) {
      stats[`${set.name}.queries`] = set.queryIds.length;
      for (const [system, table] of Object.entries(metrics[set.name]!)) {
        for (const m of ['accuracy@1', 'accuracy@10', 'recall@10', 'ndcg@10'] as const) stats[`${set.name}.${system}.${m}`] = round4(table[m]?.value ?? Number.NaN);
      }
    }
    if (gate) stats['gate'] = gate.passed ? 'passed' : 'failed';
    // A failed gate keeps its evidence: the runner publishes the evaluation, then fails the stage naming it.
    const failAfterPublish =
      gate && !gate.passed
        ? new QualityGateError(gate.message, {
            hint:
              `the metrics are kept there (metrics.json, per_query.parquet); improve the training data or steps, ` +
              `or relax params.gate (metric, evalSet, minGain) of stage "${ctx.stageId}"`,
          })
        : undefined;
    return { rows: { [PER_QUERY_FILE]: perQuery.numRows }, stats, meta: { gate, verdict }, failAfterPublish };
  },
});

const round4 = (x: number) => Math.round(x * 1e4) / 1e4;

/** Inputs and params that cannot work together, refused before any model loads; the gate as set. */
function checkWiring(ctx: Ctx, where: string): GateSpec | undefined {
  const { finetuned, evalQueries, evalQuestions } = ctx.inputs;
  if (!evalQueries && !evalQuestions) {
    throw new InvalidInputError('evaluate has no eval set', {
      where,
      hint: 'wire `evalQueries` (generated eval queries) and/or `evalQuestions` (importQuestions, --eval-questions)',
    });
  }
  const gate = ctx.params.gate;
  if (!gate) return undefined;
  const spec: GateSpec = { metric: gate.metric, evalSet: gate.evalSet ?? (evalQuestions ? 'human' : 'generated'), minGain: gate.minGain };
  if (!finetuned) {
    throw new InvalidInputError('the quality gate compares fine-tuned with base, but no fine-tuned model is wired in', {
      where,
      hint: 'wire `finetuned` (the train stage) or remove params.gate',
    });
  }
  if (!(spec.evalSet === 'human' ? evalQuestions : evalQueries)) {
    throw new InvalidInputError(`the quality gate is set on the "${spec.evalSet}" eval set, which is not wired in`, {
      where,
      hint: `wire ${spec.evalSet === 'human' ? '`evalQuestions`' : '`evalQueries`'} or set gate.evalSet`,
    });
  }
  return spec;
}
