import { pts } from './html.ts';
import { type BootstrapOptions, bootstrapMeans, pairedTest } from './bootstrap.ts';
import { InvalidInputError } from '../../core/errors.ts';
import { METRIC_NAMES, type MetricName, firstRelevantRank, queryMetrics } from './metrics.ts';
import type { GateResult, MetricTable, PairedComparison } from './metricsJson.ts';

/** One system's per-query results on one eval set. */
export interface SystemScores {
  system: string;
  /** Positions of the scored queries in the eval set (all of them, or the reranked sample). */
  queryIndex: Int32Array;
  metrics: Record<MetricName, Float64Array>;
  /** 1-based rank of the first relevant chunk in the top 100, or null. */
  firstRank: Array<number | null>;
  top10: string[][];
  /** Milliseconds per query of what this system adds (embed+search, or the reranking). */
  latencyMs: Float64Array | null;
}

export function scoreRankings(
  system: string,
  rankings: ReadonlyArray<readonly string[]>,
  relevant: ReadonlyArray<ReadonlySet<string>>,
  queryIndex: Int32Array,
  latencyMs: Float64Array | null,
): SystemScores {
  const metrics = Object.fromEntries(METRIC_NAMES.map((m) => [m, new Float64Array(rankings.length)])) as Record<MetricName, Float64Array>;
  const firstRank: Array<number | null> = [];
  rankings.forEach((ranking, i) => {
    const rel = relevant[queryIndex[i]!]!;
    const m = queryMetrics(ranking, rel);
    for (const name of METRIC_NAMES) metrics[name][i] = m[name];
    firstRank.push(firstRelevantRank(ranking, rel));
  });
  return { system, queryIndex, metrics, firstRank, top10: rankings.map((r) => r.slice(0, 10)), latencyMs };
}

export function metricTable(s: SystemScores, opts: BootstrapOptions): MetricTable {
  const intervals = bootstrapMeans(
    METRIC_NAMES.map((m) => s.metrics[m]),
    opts,
  );
  return Object.fromEntries(METRIC_NAMES.map((m, i) => [m, intervals[i]!])) as MetricTable;
}

/** b − a per metric, on the queries both systems were scored on. */
export function compareSystems(a: SystemScores, b: SystemScores, opts: BootstrapOptions): PairedComparison {
  const posInB = new Map<number, number>();
  b.queryIndex.forEach((q, i) => posInB.set(q, i));
  const pairs: Array<[number, number]> = [];
  a.queryIndex.forEach((q, i) => {
    const j = posInB.get(q);
    if (j !== undefined) pairs.push([i, j]);
  });
  const metrics = Object.fromEntries(
    METRIC_NAMES.map((m) => {
      const av = Float64Array.from(pairs, ([i]) => a.metrics[m][i]!);
      const bv = Float64Array.from(pairs, ([, j]) => b.metrics[m][j]!);
      const { n: _n, ...rest } = pairedTest(av, bv, opts);
      return [m, rest];
    }),
  ) as PairedComparison['metrics'];
  return { a: a.system, b: b.system, n: pairs.length, metrics };
}

/** Which pairs (a, b) get a paired test of b − a. */
function comparisons(bySystem: Map<string, SystemScores>, rerankDepths: number[]): Array<[string, string]> {
  const max = rerankDepths[rerankDepths.length - 1]!;
  const wanted: Array<[string, string]> = [
    ['base', 'finetuned'],
    ...rerankDepths.map((d): [string, string] => ['base', `base+rerank@${d}`]),
    // "Is fine-tuning as good as paying for a reranker?"
    [`base+rerank@${max}`, 'finetuned'],
    ['finetuned', `finetuned+rerank@${max}`],
    // "Is either model better than lexical search, which needs none, and does fusing them help?"
    ['bm25', 'base'],
    ['bm25', 'finetuned'],
    ['base', 'base+bm25'],
    ['finetuned', 'finetuned+bm25'],
    ['base+bm25', 'finetuned+bm25'],
    ['bm25', 'base+bm25'],
    ['bm25', 'finetuned+bm25'],
  ];
  return wanted.filter(([a, b]) => bySystem.has(a) && bySystem.has(b));
}

/** The paired tests of one eval set's systems (those present of: fine-tuned vs base, each reranker vs its first stage, fine-tuned vs the deepest reranker, each model vs BM25 and vs its hybrid with BM25). */
export function pairedComparisons(bySystem: Map<string, SystemScores>, rerankDepths: number[], opts: BootstrapOptions): PairedComparison[] {
  return comparisons(bySystem, rerankDepths).map(([a, b]) => compareSystems(bySystem.get(a)!, bySystem.get(b)!, opts));
}

export interface GateSpec {
  metric: MetricName;
  evalSet: 'generated' | 'human';
  minGain: number;
}


/** The quality gate: the fine-tuned model passes when the lower end of its gain's CI exceeds minGain. */
export function gateCheck(spec: GateSpec, cmp: PairedComparison): GateResult {
  const tested = cmp.metrics[spec.metric];
  if (!tested) {
    throw new InvalidInputError(`the gate's metric ${spec.metric} is not in the ${cmp.b} vs ${cmp.a} comparison`, {
      where: `gate on ${spec.evalSet}`,
      hint: 'gate on accuracy@k, mrr@10, ndcg@10 or map@100',
    });
  }
  const diff = tested.diff;
  const passed = diff.lo > spec.minGain;
  const ci = `95% CI ${pts(diff.lo)} … ${pts(diff.hi)}, n=${cmp.n}`;
  const message = passed
    ? `fine-tuned beats base on ${spec.evalSet} ${spec.metric} by ${pts(diff.value)} (${ci})`
    : `fine-tuned is not better than base on ${spec.evalSet} ${spec.metric} beyond the confidence interval: ` +
      `${pts(diff.value)} (${ci}); the gate needs the interval's lower end above ${pts(spec.minGain)}`;
  return { ...spec, diff, passed, message };
}
