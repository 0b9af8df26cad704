/**
 * Retrieval metrics for one query: a ranking (chunk ids, best first) against the set of chunks that
 * are relevant to it. Binary relevance throughout. Named and defined as sentence-transformers'
 * InformationRetrievalEvaluator names them, so the figures compare with its dev evaluator's:
 * - accuracy@k: 1 when at least one relevant chunk is in the top k, else 0 (a hit rate): the
 *   headline figure, as it means the same whether a query has one relevant chunk (a generated query
 *   and its chunk) or several alternatives (a human question whose answer span lies in two
 *   overlapping chunks — each alone answers it).
 * - recall@k: |relevant ∩ top k| / |relevant|. Equal to accuracy@k for a query with one relevant
 *   chunk; with several it depends on how much the chunker overlaps (recall@1 ≤ 1/|relevant|).
 * - mrr@10: 1 / rank of the first relevant chunk within the top 10, else 0.
 * - ndcg@10: DCG over the top 10 with gain 1 / log2(rank + 1), divided by the ideal DCG of
 *   min(|relevant|, 10) relevant chunks at the top.
 * - map@100: average precision over the top 100, normalised by min(|relevant|, 100)
 *   (the sentence-transformers convention), so a query is not punished for relevant chunks that
 *   cannot fit in the cut-off.
 * A query with no relevant chunk at all scores 0 on every metric (it cannot be answered).
 */

export const ACCURACY_NAMES = ['accuracy@1', 'accuracy@5', 'accuracy@10', 'accuracy@50'] as const;
export const RECALL_NAMES = ['recall@1', 'recall@5', 'recall@10', 'recall@50'] as const;
export const METRIC_NAMES = [...ACCURACY_NAMES, ...RECALL_NAMES, 'mrr@10', 'ndcg@10', 'map@100'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];
export type RecallName = (typeof RECALL_NAMES)[number];
/** The metrics every metrics.json has (true recall is absent in files written before it was computed). */
export type StableMetricName = Exclude<MetricName, RecallName>;
export type QueryMetrics = Record<MetricName, number>;

/** How deep a ranking must be for every metric above. */
export const RANKING_DEPTH = 100;

/** 1-based rank of the first relevant id in the ranking, or null when none is there. */
export function firstRelevantRank(ranking: readonly string[], relevant: ReadonlySet<string>): number | null {
  for (let i = 0; i < ranking.length; i++) if (relevant.has(ranking[i]!)) return i + 1;
  return null;
}

export function accuracyAt(ranking: readonly string[], relevant: ReadonlySet<string>, k: number): number {
  const r = firstRelevantRank(ranking.slice(0, k), relevant);
  return r === null ? 0 : 1;
}

export function recallAt(ranking: readonly string[], relevant: ReadonlySet<string>, k: number): number {
  if (relevant.size === 0) return 0;
  let hits = 0;
  const top = Math.min(k, ranking.length);
  for (let i = 0; i < top; i++) if (relevant.has(ranking[i]!)) hits++;
  return hits / relevant.size;
}

export function mrrAt(ranking: readonly string[], relevant: ReadonlySet<string>, k: number): number {
  const r = firstRelevantRank(ranking.slice(0, k), relevant);
  return r === null ? 0 : 1 / r;
}

export function ndcgAt(ranking: readonly string[], relevant: ReadonlySet<string>, k: number): number {
  if (relevant.size === 0) return 0;
  let dcg = 0;
  const top = Math.min(k, ranking.length);
  for (let i = 0; i < top; i++) if (relevant.has(ranking[i]!)) dcg += 1 / Math.log2(i + 2);
  let idcg = 0;
  for (let i = 0; i < Math.min(relevant.size, k); i++) idcg += 1 / Math.log2(i + 2);
  return dcg / idcg;
}

export function averagePrecisionAt(ranking: readonly string[], relevant: ReadonlySet<string>, k: number): number {
  if (relevant.size === 0) return 0;
  let hits = 0;
  let sum = 0;
  const top = Math.min(k, ranking.length);
  for (let i = 0; i < top; i++) {
    if (relevant.has(ranking[i]!)) {
      hits++;
      sum += hits / (i + 1);
    }
  }
  return sum / Math.min(relevant.size, k);
}

export function queryMetrics(ranking: readonly string[], relevant: ReadonlySet<string>): QueryMetrics {
  return {
    'accuracy@1': accuracyAt(ranking, relevant, 1),
    'accuracy@5': accuracyAt(ranking, relevant, 5),
    'accuracy@10': accuracyAt(ranking, relevant, 10),
    'accuracy@50': accuracyAt(ranking, relevant, 50),
    'recall@1': recallAt(ranking, relevant, 1),
    'recall@5': recallAt(ranking, relevant, 5),
    'recall@10': recallAt(ranking, relevant, 10),
    'recall@50': recallAt(ranking, relevant, 50),
    'mrr@10': mrrAt(ranking, relevant, 10),
    'ndcg@10': ndcgAt(ranking, relevant, 10),
    'map@100': averagePrecisionAt(ranking, relevant, 100),
  };
}

/** Accuracy@k for k = 1..maxK, averaged over queries, from each query's first relevant rank (for curves). */
export function accuracyCurve(firstRanks: ReadonlyArray<number | null>, maxK: number): number[] {
  const counts = new Array<number>(maxK + 1).fill(0);
  for (const r of firstRanks) if (r !== null && r <= maxK) counts[r]!++;
  const out: number[] = [];
  let cum = 0;
  for (let k = 1; k <= maxK; k++) {
    cum += counts[k]!;
    out.push(firstRanks.length === 0 ? 0 : cum / firstRanks.length);
  }
  return out;
}
