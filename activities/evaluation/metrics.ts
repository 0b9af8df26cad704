/**
 * Retrieval metrics for one query: a ranking (chunk ids, best first) against the set of chunks that
 * are relevant to it. Binary relevance throughout.
 *
 * Conventions, chosen so the numbers mean the same thing whether a query has one relevant chunk
 * (a generated query and its chunk) or several (a human question whose answer span lies in two
 * overlapping chunks — each alone answers it):
 * - recall@k: 1 when at least one relevant chunk is in the top k, else 0 (a hit rate). With one
 *   relevant chunk this is the textbook recall@k; with several alternatives the textbook
 *   |relevant ∩ top k| / |relevant| would cap recall@1 at 1/|relevant| and make it depend on how
 *   much the chunker overlaps.
 * - mrr@10: 1 / rank of the first relevant chunk within the top 10, else 0.
 * - ndcg@10: DCG over the top 10 with gain 1 / log2(rank + 1), divided by the ideal DCG of
 *   min(|relevant|, 10) relevant chunks at the top.
 * - map@100: average precision over the top 100, normalised by min(|relevant|, 100)
 *   (the sentence-transformers convention), so a query is not punished for relevant chunks that
 *   cannot fit in the cut-off.
 * A query with no relevant chunk at all scores 0 on every metric (it cannot be answered).
 */

export const METRIC_NAMES = ['recall@1', 'recall@5', 'recall@10', 'recall@50', 'mrr@10', 'ndcg@10', 'map@100'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];
export type QueryMetrics = Record<MetricName, number>;

/** How deep a ranking must be for every metric above. */
export const RANKING_DEPTH = 100;

/** 1-based rank of the first relevant id in the ranking, or null when none is there. */
export function firstRelevantRank(ranking: readonly string[], relevant: ReadonlySet<string>): number | null {
  for (let i = 0; i < ranking.length; i++) if (relevant.has(ranking[i]!)) return i + 1;
  return null;
}

export function recallAt(ranking: readonly string[], relevant: ReadonlySet<string>, k: number): number {
  const r = firstRelevantRank(ranking.slice(0, k), relevant);
  return r === null ? 0 : 1;
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
    'recall@1': recallAt(ranking, relevant, 1),
    'recall@5': recallAt(ranking, relevant, 5),
    'recall@10': recallAt(ranking, relevant, 10),
    'recall@50': recallAt(ranking, relevant, 50),
    'mrr@10': mrrAt(ranking, relevant, 10),
    'ndcg@10': ndcgAt(ranking, relevant, 10),
    'map@100': averagePrecisionAt(ranking, relevant, 100),
  };
}

/** Recall@k for k = 1..maxK, averaged over queries, from each query's first relevant rank (for curves). */
export function recallCurve(firstRanks: ReadonlyArray<number | null>, maxK: number): number[] {
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
