import { Table } from 'apache-arrow';
import { z } from 'zod';
import { writeFileAtomic } from '../artifacts/fsutil.ts';
import { readParquet, writeParquet } from '../artifacts/parquet.ts';
import type { ArtifactReader } from '../artifacts/store.ts';
import { type StageContext, defineStage } from '../dsl/stage.ts';
import { Encoder } from './embedding/encoder.ts';
import { encodingNeeds, onnxGraph, tableRows, vectorBytes } from './resourceEstimates.ts';
import { embedWithMemo, openEmbeddingMemo } from './embedding/memoEmbed.ts';
import { InvalidInputError, QualityGateError } from './errors.ts';
import { seededSample } from './evaluation/bootstrap.ts';
import { summarizeLatency } from './evaluation/latency.ts';
import { METRIC_NAMES, RANKING_DEPTH } from './evaluation/metrics.ts';
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
import { ExactIndex } from './evaluation/search.ts';
import { type SystemScores, compareSystems, gateCheck, metricTable, scoreRankings } from './evaluation/summary.ts';
import { float64, int32, stringColumn, utf8, utf8List } from './evaluation/tables.ts';
import { devCheckOf, judge, verdictStats } from './evaluation/verdict.ts';
import { CHUNKS_FILE } from './artifactKinds/chunksArtifact.ts';
import { readEvalQuestions } from './artifactKinds/evalQuestionsArtifact.ts';
import { METRICS_FILE, PER_QUERY_FILE, metricsText } from './artifactKinds/evaluationArtifact.ts';
import { QUERIES_FILE } from './artifactKinds/queriesArtifact.ts';
import { loadCrossEncoder, orderByScore } from './rerank/crossEncoder.ts';

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

interface Corpus {
  ids: string[];
  texts: string[];
  documents: number;
}

interface EvalSet {
  name: EvalSetName;
  queryIds: string[];
  texts: string[];
  relevant: Array<Set<string>>;
  skipped: number;
}

/** Untimed runs before measuring, so one-time costs (graph warm-up, JIT) stay out of the percentiles. */
const WARMUP_QUERIES = 3;

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
      models.length * vectorBytes(tableRows(inputs.chunks)),
    );
  },
  async run(ctx) {
    const started = performance.now();
    const p = ctx.params;
    const { base, finetuned, chunks, evalQueries, evalQuestions, reranker } = ctx.inputs;
    const where = `stage "${ctx.stageId}" (evaluate)`;
    if (!evalQueries && !evalQuestions) {
      throw new InvalidInputError('evaluate has no eval set', {
        where,
        hint: 'wire `evalQueries` (generated eval queries) and/or `evalQuestions` (importQuestions, --eval-questions)',
      });
    }
    const gateSpec = p.gate && {
      metric: p.gate.metric,
      evalSet: p.gate.evalSet ?? (evalQuestions ? 'human' : 'generated'),
      minGain: p.gate.minGain,
    } as const;
    if (gateSpec && !finetuned) {
      throw new InvalidInputError('the quality gate compares fine-tuned with base, but no fine-tuned model is wired in', {
        where,
        hint: 'wire `finetuned` (the train stage) or remove params.gate',
      });
    }
    if (gateSpec && !(gateSpec.evalSet === 'human' ? evalQuestions : evalQueries)) {
      throw new InvalidInputError(`the quality gate is set on the "${gateSpec.evalSet}" eval set, which is not wired in`, {
        where,
        hint: `wire ${gateSpec.evalSet === 'human' ? '`evalQuestions`' : '`evalQueries`'} or set gate.evalSet`,
      });
    }

    const corpus = await readCorpus(chunks);
    const chunkIds = new Set(corpus.ids);
    const sets: EvalSet[] = [];
    if (evalQueries) sets.push(sample(await readGenerated(evalQueries, chunkIds), p));
    if (evalQuestions) sets.push(sample(await readHuman(evalQuestions, chunks, chunkIds), p));
    for (const s of sets) {
      if (s.queryIds.length === 0) {
        throw new InvalidInputError(`the ${s.name} eval set has no query whose relevant chunk is in the corpus`, {
          where,
          hint: 'build the eval set from the same chunks artifact the evaluation reads',
        });
      }
    }

    const rerankDepths = [...new Set(p.rerankDepths)].sort((a, b) => a - b);
    const queryCount = sets.reduce((s, e) => s + e.queryIds.length, 0);
    const models = [{ role: 'base' as const, reader: base }, ...(finetuned ? [{ role: 'finetuned' as const, reader: finetuned }] : [])];
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
    /** Corpus row indices of each query's top 100, per model and eval set: the rerankers' candidates. */
    const candidates = new Map<string, Int32Array[]>();
    const latency: LatencyTable = { 'embed+search': {}, rerank: {} };
    const modelMeta: MetricsJson['meta']['models'] = {};
    let corpusMemoHits = 0;
    /** Texts the models embedded for ranking (the latency sample's repeats not counted). */
    let embeddingsComputed = 0;

    for (const { role, reader } of models) {
      const enc = await Encoder.load(reader.dir, { variant: p.variant });
      try {
        modelMeta[role] = { name: enc.info.name, digest: reader.digest, variant: p.variant };
        // Through the shared embedding memo: chunks the mining stage (or an earlier evaluation)
        // embedded with this model, and queries an earlier evaluation embedded, are not embedded again.
        const memo = await openEmbeddingMemo(ctx.store, reader.digest, p.variant);
        const embed = async (texts: readonly string[], kind: 'passage' | 'query', message: string) => {
          let last = 0;
          const r = await embedWithMemo(enc, memo, texts, {
            kind,
            batchSize: p.batchSize,
            // Progress (the heartbeat) comes once per flush: keep it frequent on a slow CPU.
            flushEvery: 128,
            signal: ctx.signal,
            onProgress: (n) => {
              tick(n - last, message);
              last = n;
            },
          });
          // Repeated texts are embedded once but count once each.
          tick(texts.length - last, message);
          return r;
        };
        const queryVectors: Float32Array[] = [];
        const corpusEmbedded = await embed(corpus.texts, 'passage', `${role}: embedding the corpus`)
          .then(async (r) => {
            for (const set of sets) queryVectors.push((await embed(set.texts, 'query', `${role}: ${set.name} queries`)).embeddings.data);
            return r;
          })
          .finally(() => memo.close());
        corpusMemoHits += corpusEmbedded.memoHits;
        const { dim } = corpusEmbedded.embeddings;
        const index = new ExactIndex(corpusEmbedded.embeddings.data, dim);
        embeddingsComputed += enc.modelCalls;

        // Latency as a search service sees it: one query embedded and searched at a time.
        const search = async (text: string) => index.search((await enc.encode([text], { kind: 'query' })).data, RANKING_DEPTH).indices;
        for (const text of sets[0]!.texts.slice(0, WARMUP_QUERIES)) await search(text);
        const timed = sets.map((set) => new Float64Array(set.texts.length).fill(Number.NaN));
        const flat = sets.flatMap((set, si) => set.texts.map((_, i) => [si, i] as const));
        for (const j of seededSample(flat.length, p.latencyQueries, p.seed)) {
          ctx.signal.throwIfAborted();
          const [si, i] = flat[j]!;
          const t0 = performance.now();
          await search(sets[si]!.texts[i]!);
          timed[si]![i] = performance.now() - t0;
        }
        const allLatencies: number[] = timed.flatMap((ms) => Array.from(ms).filter((x) => !Number.isNaN(x)));

        sets.forEach((set, si) => {
          const vectors = queryVectors[si]!;
          const top = set.texts.map((_, i) => index.search(vectors.subarray(i * dim, (i + 1) * dim), RANKING_DEPTH).indices);
          candidates.set(`${role}/${set.name}`, top);
          const rankings = top.map((t) => Array.from(t, (j) => corpus.ids[j]!));
          scores.get(set.name)!.set(role, scoreRankings(role, rankings, set.relevant, allIndices(set), timed[si]!));
        });
        latency['embed+search'][role] = summarizeLatency(allLatencies);
      } finally {
        await enc.release();
      }
    }

    let rerankerName: string | undefined;
    if (reranker) {
      rerankerName = await rerankAll(ctx, {
        dir: reranker.dir,
        sets,
        corpus,
        candidates,
        depths: rerankDepths,
        withFinetuned: Boolean(finetuned) && p.rerankFinetuned,
        scores,
        latency,
        tick,
      });
    }

    const boot = { samples: p.bootstrapSamples, seed: p.seed, alpha: 0.05 };
    const metrics: Partial<Record<EvalSetName, SetMetrics>> = {};
    const pairedTests: Partial<Record<EvalSetName, PairedComparison[]>> = {};
    for (const set of sets) {
      const bySystem = scores.get(set.name)!;
      metrics[set.name] = Object.fromEntries([...bySystem].map(([name, s]) => [name, metricTable(s, boot)]));
      pairedTests[set.name] = comparisons(bySystem, rerankDepths).map(([a, b]) => compareSystems(bySystem.get(a)!, bySystem.get(b)!, boot));
    }
    let gate: GateResult | null = null;
    if (gateSpec) {
      const cmp = pairedTests[gateSpec.evalSet]!.find((c) => c.a === 'base' && c.b === 'finetuned')!;
      gate = gateCheck(gateSpec, cmp);
    }

    const seconds = (performance.now() - started) / 1000;
    const meta: MetricsJson['meta'] = {
      inputs: Object.fromEntries(
        Object.entries(ctx.inputs).flatMap(([name, r]) => (r ? [[name, (r as ArtifactReader).digest]] : [])),
      ),
      models: {
        ...modelMeta,
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
      corpusMemoHits,
      embeddingsComputed,
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

function allIndices(set: EvalSet): Int32Array {
  return Int32Array.from(set.queryIds, (_, i) => i);
}

/** Which pairs (a, b) get a paired test of b − a. */
function comparisons(bySystem: Map<string, SystemScores>, depths: number[]): Array<[string, string]> {
  const max = depths[depths.length - 1]!;
  const wanted: Array<[string, string]> = [
    ['base', 'finetuned'],
    ...depths.map((d): [string, string] => ['base', `base+rerank@${d}`]),
    // "Is fine-tuning as good as paying for a reranker?"
    [`base+rerank@${max}`, 'finetuned'],
    ['finetuned', `finetuned+rerank@${max}`],
  ];
  return wanted.filter(([a, b]) => bySystem.has(a) && bySystem.has(b));
}

async function readCorpus(chunks: ArtifactReader): Promise<Corpus> {
  const where = chunks.file(CHUNKS_FILE);
  const t = await readParquet(where, ['chunk_id', 'doc_id', 'text']);
  const ids = stringColumn(t, 'chunk_id', where);
  if (ids.length === 0) throw new InvalidInputError('the chunks artifact is empty', { where });
  return { ids, texts: stringColumn(t, 'text', where), documents: new Set(stringColumn(t, 'doc_id', where)).size };
}

async function readGenerated(input: ArtifactReader, chunkIds: Set<string>): Promise<EvalSet> {
  const where = input.file(QUERIES_FILE);
  const t = await readParquet(where, ['query_id', 'chunk_id', 'text']);
  const qids = stringColumn(t, 'query_id', where);
  const cids = stringColumn(t, 'chunk_id', where);
  const texts = stringColumn(t, 'text', where);
  const set: EvalSet = { name: 'generated', queryIds: [], texts: [], relevant: [], skipped: 0 };
  qids.forEach((q, i) => {
    if (!chunkIds.has(cids[i]!)) {
      set.skipped++;
      return;
    }
    set.queryIds.push(q);
    set.texts.push(texts[i]!);
    set.relevant.push(new Set([cids[i]!]));
  });
  return set;
}

async function readHuman(input: ArtifactReader, chunks: ArtifactReader, chunkIds: Set<string>): Promise<EvalSet> {
  const resolvedAgainst = input.manifest.lineage.inputs['chunks'];
  if (resolvedAgainst && resolvedAgainst !== chunks.digest) {
    throw new InvalidInputError('the human questions were matched to the chunks of another chunks artifact', {
      where: `evalQuestions ${input.digest}`,
      hint: 'wire the importQuestions stage and the evaluate stage to the same chunks stage',
    });
  }
  const set: EvalSet = { name: 'human', queryIds: [], texts: [], relevant: [], skipped: 0 };
  for (const q of await readEvalQuestions(input)) {
    const rel = q.relevant.filter((c) => chunkIds.has(c));
    if (rel.length === 0) {
      set.skipped++;
      continue;
    }
    set.queryIds.push(q.query_id);
    set.texts.push(q.text);
    set.relevant.push(new Set(rel));
  }
  return set;
}

function sample(set: EvalSet, p: Params): EvalSet {
  if (!p.maxQueries || set.queryIds.length <= p.maxQueries) return set;
  const keep = seededSample(set.queryIds.length, p.maxQueries, p.seed);
  const pick = <T>(xs: T[]) => Array.from(keep, (i) => xs[i]!);
  return { ...set, queryIds: pick(set.queryIds), texts: pick(set.texts), relevant: pick(set.relevant) };
}

interface RerankJob {
  dir: string;
  sets: EvalSet[];
  corpus: Corpus;
  candidates: Map<string, Int32Array[]>;
  depths: number[];
  withFinetuned: boolean;
  scores: Map<EvalSetName, Map<string, SystemScores>>;
  latency: LatencyTable;
  tick: (n: number, message: string) => void;
}

/**
 * Rerank base's top N with the cross-encoder, for each depth N. The candidates are scored in
 * depth-sized slices (top 30, then 31–50), so the time to the first depth is measured on its own and
 * the deeper one is the cumulative time — the latency a service reranking that deep would see.
 * Below the reranked depth the base order is kept, so accuracy@50 and MAP@100 stay defined.
 */
async function rerankAll(ctx: Ctx, job: RerankJob): Promise<string> {
  const ce = await loadCrossEncoder(job.dir);
  const maxDepth = job.depths[job.depths.length - 1]!;
  const p = ctx.params;
  const latencies = new Map<number, number[]>(job.depths.map((d) => [d, []]));
  try {
    for (const set of job.sets) {
      const chosen = seededSample(set.queryIds.length, p.rerankMaxQueries ?? set.queryIds.length, p.seed);
      const baseTop = job.candidates.get(`base/${set.name}`)!;
      const ftTop = job.candidates.get(`finetuned/${set.name}`);
      const rankings = new Map<number, string[][]>(job.depths.map((d) => [d, []]));
      const ms = new Map<number, Float64Array>(job.depths.map((d) => [d, new Float64Array(chosen.length)]));
      const ftRankings: string[][] = [];
      const warm = baseTop[chosen[0]!]!;
      await ce.score(set.texts[chosen[0]!]!, Array.from(warm.subarray(0, maxDepth), (j) => job.corpus.texts[j]!));
      for (let k = 0; k < chosen.length; k++) {
        ctx.signal.throwIfAborted();
        const qi = chosen[k]!;
        const query = set.texts[qi]!;
        const cand = baseTop[qi]!;
        const scoreOf = new Map<number, number>();
        let prev = 0;
        let elapsed = 0;
        for (const d of job.depths) {
          const slice = Array.from(cand.subarray(prev, d));
          const t0 = performance.now();
          const s = await ce.score(query, slice.map((j) => job.corpus.texts[j]!));
          elapsed += performance.now() - t0;
          slice.forEach((j, x) => scoreOf.set(j, s[x]!));
          ms.get(d)![k] = elapsed;
          prev = Math.max(prev, Math.min(d, cand.length));
        }
        for (const d of job.depths) rankings.get(d)!.push(reranked(cand, d, scoreOf, job.corpus.ids));
        if (job.withFinetuned && ftTop) {
          const fc = ftTop[qi]!;
          const missing = Array.from(fc.subarray(0, maxDepth)).filter((j) => !scoreOf.has(j));
          if (missing.length) {
            const s = await ce.score(query, missing.map((j) => job.corpus.texts[j]!));
            missing.forEach((j, x) => scoreOf.set(j, s[x]!));
          }
          ftRankings.push(reranked(fc, maxDepth, scoreOf, job.corpus.ids));
        }
        if (k % 10 === 9) job.tick(10 * maxDepth, `reranking ${set.name} queries`);
      }
      job.tick((chosen.length % 10) * maxDepth, `reranking ${set.name} queries`);
      const bySystem = job.scores.get(set.name)!;
      for (const d of job.depths) {
        bySystem.set(`base+rerank@${d}`, scoreRankings(`base+rerank@${d}`, rankings.get(d)!, set.relevant, chosen, ms.get(d)!));
        latencies.get(d)!.push(...ms.get(d)!);
      }
      if (ftRankings.length) {
        bySystem.set(`finetuned+rerank@${maxDepth}`, scoreRankings(`finetuned+rerank@${maxDepth}`, ftRankings, set.relevant, chosen, null));
      }
    }
  } finally {
    await ce.close();
  }
  for (const d of job.depths) job.latency.rerank[`rerank@${d}`] = summarizeLatency(latencies.get(d)!);
  return ce.name;
}

function reranked(cand: Int32Array, depth: number, scoreOf: Map<number, number>, ids: string[]): string[] {
  const head = Array.from(cand.subarray(0, depth));
  const order = orderByScore(
    head,
    head.map((j) => scoreOf.get(j)!),
  );
  return [...order, ...cand.subarray(depth)].map((j) => ids[j]!);
}

function perQueryTable(sets: EvalSet[], scores: Map<EvalSetName, Map<string, SystemScores>>): Table {
  const col = {
    eval_set: [] as string[],
    system: [] as string[],
    query_id: [] as string[],
    first_relevant_rank: [] as Array<number | null>,
    latency_ms: [] as Array<number | null>,
    top10: [] as string[][],
    relevant_chunk_ids: [] as string[][],
    metrics: Object.fromEntries(METRIC_NAMES.map((m) => [m, [] as number[]])) as Record<(typeof METRIC_NAMES)[number], number[]>,
  };
  for (const set of sets) {
    for (const s of scores.get(set.name)!.values()) {
      s.queryIndex.forEach((qi, i) => {
        col.eval_set.push(set.name);
        col.system.push(s.system);
        col.query_id.push(set.queryIds[qi]!);
        col.first_relevant_rank.push(s.firstRank[i] ?? null);
        // NaN: a query outside the timed sample.
        const ms = s.latencyMs?.[i];
        col.latency_ms.push(ms === undefined || Number.isNaN(ms) ? null : ms);
        col.top10.push(s.top10[i]!);
        col.relevant_chunk_ids.push([...set.relevant[qi]!]);
        for (const m of METRIC_NAMES) col.metrics[m].push(s.metrics[m][i]!);
      });
    }
  }
  return new Table({
    eval_set: utf8(col.eval_set),
    system: utf8(col.system),
    query_id: utf8(col.query_id),
    first_relevant_rank: int32(col.first_relevant_rank),
    ...Object.fromEntries(METRIC_NAMES.map((m) => [m, float64(col.metrics[m])])),
    latency_ms: float64(col.latency_ms),
    top10: utf8List(col.top10),
    relevant_chunk_ids: utf8List(col.relevant_chunk_ids),
  });
}
