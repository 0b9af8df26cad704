import { z } from 'zod';
import { Digest } from '../../artifacts/manifest.ts';
import { Interval, PairedTest } from './bootstrap.ts';
import { LatencySummary } from './latency.ts';
import { METRIC_NAMES, RECALL_NAMES, type RecallName } from './metrics.ts';

/**
 * metrics.json of an `evaluation` artifact (copied into the `report` artifact), shaped for the CLI's
 * --json: the eval sets are top-level keys, each mapping a system to its metrics with 95% CIs:
 *   { "schemaVersion": 2,
 *     "human": { "base": { "accuracy@1": {"value", "lo", "hi"}, …, "map@100": {…} }, "finetuned": {…} },
 *     "generated": {…}, "pairedTests": {…}, "latency": {…}, "gate": {…} | null,
 *     "verdict": { "finetuned": { "human": "worse", … }, "overall": "worse", "baselines": {…}, "notes": […] },
 *     "meta": {…} }
 *
 * Versions: 2 names metrics as sentence-transformers' InformationRetrievalEvaluator does (accuracy@k
 * the hit rate, recall@k true recall). Files without schemaVersion (1) called the hit rate
 * "recall@k" and had no true recall: reading one, its recall@k are read as accuracy@k in metric
 * tables and paired tests (a table is version 1 when it has recall@k and no accuracy@k: version 2
 * always writes both), and recall@k is absent there. The gate's metric name is kept as written.
 */

export const METRICS_SCHEMA_VERSION = 2;

const OLD_HIT_RATE: Record<string, string> = Object.fromEntries(RECALL_NAMES.map((r) => [r, r.replace('recall@', 'accuracy@')]));

/** A version-1 table (recall@k present, accuracy@k absent: v2 always writes both) with its hit rates renamed. */
function upgradeTable(raw: unknown): unknown {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw) || 'accuracy@1' in raw || !('recall@1' in raw)) return raw;
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [OLD_HIT_RATE[k] ?? k, v]));
}

/** Per metric; true recall is absent in files written before it was computed (schema version 1). */
function metricRecord<T extends z.ZodType>(value: T) {
  const shape = Object.fromEntries(METRIC_NAMES.map((m) => [m, (RECALL_NAMES as readonly string[]).includes(m) ? value.optional() : value])) as {
    [K in (typeof METRIC_NAMES)[number]]: K extends RecallName ? z.ZodOptional<T> : T;
  };
  return z.preprocess(upgradeTable, z.object(shape));
}

export const EVAL_SETS = ['generated', 'human'] as const;
export const EvalSetName = z.enum(EVAL_SETS);
export type EvalSetName = z.infer<typeof EvalSetName>;

/** 'base', 'finetuned', 'base+rerank@30', 'finetuned+rerank@50', 'bm25' (lexical, no model), 'base+bm25' (hybrid), … */
export const SystemName = z.string().regex(/^(bm25|(base|finetuned)(\+rerank@\d+|\+bm25)?)$/, 'a system is bm25 or base|finetuned[+rerank@N|+bm25]');
export type SystemName = z.infer<typeof SystemName>;

export const MetricName = z.enum(METRIC_NAMES);
export const MetricTable = metricRecord(Interval);
export type MetricTable = z.infer<typeof MetricTable>;
export const SetMetrics = z.record(SystemName, MetricTable);
export type SetMetrics = z.infer<typeof SetMetrics>;

/** b compared with a on the queries both were scored on; per metric, b − a. */
export const PairedComparison = z.object({
  a: SystemName,
  b: SystemName,
  n: z.number().int().nonnegative(),
  metrics: metricRecord(PairedTest.omit({ n: true })),
});
export type PairedComparison = z.infer<typeof PairedComparison>;

export const LatencyTable = z.object({
  /** Per query: embed the query (batch of 1) and search the whole corpus, per model. */
  'embed+search': z.partialRecord(z.enum(['base', 'finetuned']), LatencySummary),
  /** Per query: cross-encoder scoring of the top N candidates, per depth ('rerank@30'...). */
  rerank: z.record(z.string(), LatencySummary),
});
export type LatencyTable = z.infer<typeof LatencyTable>;

export const GateResult = z.object({
  /** In a version-1 file, recall@k here names the hit rate (kept as written: the gate's figures are stored, not recomputed). */
  metric: MetricName,
  evalSet: EvalSetName,
  minGain: z.number(),
  diff: Interval,
  passed: z.boolean(),
  message: z.string(),
});
export type GateResult = z.infer<typeof GateResult>;

/** Fine-tuned against base: a gain or a loss beyond the 95% interval, or neither. */
export const Outcome = z.enum(['better', 'worse', 'no difference']);
export type Outcome = z.infer<typeof Outcome>;

/**
 * Whether a reranked system is a comparison worth making: 'harms its first stage' when it ranks
 * worse than the system whose candidates it reorders (accuracy@1 or accuracy@10 lower beyond the
 * interval); 'too few queries' when it was scored on a sample too small to judge.
 */
export const BaselineStatus = z.enum(['valid', 'harms its first stage', 'too few queries']);
export type BaselineStatus = z.infer<typeof BaselineStatus>;

/** The training dev split's figures before (step 0) and after fine-tuning, as the train stage recorded them. */
export const DevCheck = z.object({
  /** The step of the fine-tuned figures (the last evaluation). */
  step: z.number().int(),
  /** Dev metric (e.g. dev_cosine_ndcg@10) → its value for base and for the fine-tuned model. */
  figures: z.record(z.string(), z.object({ base: z.number(), finetuned: z.number() })),
  outcome: Outcome,
  /**
   * The merge with the base (train's mergeWithBase), when it ran: the share of the fine-tune kept, why,
   * and the best share's dev nDCG@10 gain over the base with its paired 95% interval.
   */
  merge: z
    .object({
      share: z.number(),
      chosenBy: z.string(),
      best: z.object({ share: z.number(), gain: z.number(), low: z.number(), high: z.number() }).optional(),
    })
    .optional(),
});
export type DevCheck = z.infer<typeof DevCheck>;

/** The model a run hands over (fine-tuned, else base) against BM25, and its hybrid with BM25 against BM25. */
export const LexicalStanding = z.object({ model: SystemName, versusBm25: Outcome, hybridVersusBm25: Outcome.optional() });
export type LexicalStanding = z.infer<typeof LexicalStanding>;

export const Verdict = z.object({
  /** Fine-tuned vs base per eval set (paired 95% CI of accuracy@1 and ndcg@10) and on the training dev split. */
  finetuned: z.partialRecord(z.enum([...EVAL_SETS, 'dev']), Outcome),
  /** 'worse' when worse anywhere, else 'better' when better anywhere; null without a fine-tuned model. */
  overall: Outcome.nullable(),
  /** Per eval set, each reranked system's standing as a baseline. */
  baselines: z.partialRecord(EvalSetName, z.record(SystemName, BaselineStatus)),
  dev: DevCheck.optional(),
  /**
   * Per eval set, the model the run hands over (fine-tuned, else base) against lexical search with no
   * model ('bm25'), and its hybrid with BM25 against BM25: the bar a user clears without embedflow.
   */
  lexical: z.partialRecord(EvalSetName, LexicalStanding).optional(),
  /** Per eval set, the system with the highest accuracy@1 (then nDCG@10) among those scored on every query. */
  best: z.partialRecord(EvalSetName, SystemName).optional(),
  /** The verdict in plain sentences, the worst news ('bad') first. */
  notes: z.array(
    z.object({
      /** What the sentence judges: fine-tuned on an eval set, fine-tuned on the dev split, a reranked baseline, the model against BM25, or the best system. */
      about: z.enum(['evalSet', 'dev', 'baseline', 'lexical', 'best']),
      severity: z.enum(['bad', 'info']),
      text: z.string(),
    }),
  ),
});
export type Verdict = z.infer<typeof Verdict>;

export const EvalMeta = z.object({
  /** Input name → artifact digest: the evaluation's lineage, part of its content. */
  inputs: z.record(z.string(), Digest),
  models: z.record(z.string(), z.object({ name: z.string(), digest: Digest, variant: z.string().optional() })),
  corpus: z.object({ chunks: z.number().int(), documents: z.number().int() }),
  evalSets: z.partialRecord(
    EvalSetName,
    z.object({
      queries: z.number().int(),
      /** Queries the rerank systems were scored on (a seeded sample when rerankMaxQueries is set). */
      reranked: z.number().int(),
      /** Queries left out: their relevant chunk is not in the corpus. */
      skipped: z.number().int(),
      relevantPerQuery: z.number(),
    }),
  ),
  bootstrap: z.object({ samples: z.number().int(), seed: z.number().int(), alpha: z.number() }),
  throughput: z.object({ queriesPerSecond: z.number(), queries: z.number().int(), seconds: z.number() }),
  definitions: z.record(z.string(), z.string()),
});
export type EvalMeta = z.infer<typeof EvalMeta>;

export const MetricsJson = z.object({
  /** Absent (version 1) in files written before the metric names of sentence-transformers; see above. */
  schemaVersion: z.literal(METRICS_SCHEMA_VERSION).optional(),
  generated: SetMetrics.optional(),
  human: SetMetrics.optional(),
  pairedTests: z.partialRecord(EvalSetName, z.array(PairedComparison)),
  latency: LatencyTable,
  gate: GateResult.nullable(),
  /** Absent in evaluations written before verdicts existed; the report then derives it from pairedTests. */
  verdict: Verdict.optional(),
  meta: EvalMeta,
});
export type MetricsJson = z.infer<typeof MetricsJson>;

export const METRIC_DEFINITIONS: Record<string, string> = {
  'accuracy@k': 'share of queries with at least one relevant chunk in the top k (a hit rate)',
  'recall@k': 'mean over queries of the share of their relevant chunks in the top k',
  'mrr@10': 'mean of 1/rank of the first relevant chunk within the top 10 (0 if none)',
  'ndcg@10': 'binary-gain nDCG over the top 10, ideal = min(|relevant|, 10) relevant chunks first',
  'map@100': 'mean average precision over the top 100, normalised by min(|relevant|, 100)',
  interval: '95% percentile bootstrap over queries (seeded)',
  pairedTest: 'paired bootstrap interval of the per-query difference; p from a sign-flip permutation test',
};
