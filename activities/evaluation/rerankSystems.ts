import { loadCrossEncoder, orderByScore } from '../rerank/crossEncoder.ts';
import { seededSample } from './bootstrap.ts';
import type { Corpus, EvalSet } from './evalSets.ts';
import { summarizeLatency } from './latency.ts';
import type { EvalSetName, LatencyTable } from './metricsJson.ts';
import { type SystemScores, scoreRankings } from './summary.ts';

/** The reranked systems: a cross-encoder reorders a first-stage model's top N ('base+rerank@N', 'finetuned+rerank@N'). */

export interface RerankJob {
  /** The cross-encoder model's folder. */
  dir: string;
  sets: EvalSet[];
  corpus: Corpus;
  /** Each query's top 100 (corpus row indices) by the first-stage models, per eval set. */
  candidates: { base: Map<EvalSetName, Int32Array[]>; finetuned?: Map<EvalSetName, Int32Array[]> };
  depths: number[];
  withFinetuned: boolean;
  scores: Map<EvalSetName, Map<string, SystemScores>>;
  latency: LatencyTable;
  tick: (n: number, message: string) => void;
  signal: AbortSignal;
  /** Rerank a seeded sample of this many queries per eval set; all when undefined. */
  maxQueries?: number;
  seed: number;
}

/**
 * Rerank base's top N with the cross-encoder, for each depth N. The candidates are scored in
 * depth-sized slices (top 30, then 31–50), so the time to the first depth is measured on its own and
 * the deeper one is the cumulative time — the latency a service reranking that deep would see.
 * Below the reranked depth the base order is kept, so accuracy@50 and MAP@100 stay defined.
 */
export async function rerankAll(job: RerankJob): Promise<string> {
  const ce = await loadCrossEncoder(job.dir);
  const maxDepth = job.depths[job.depths.length - 1]!;
  const latencies = new Map<number, number[]>(job.depths.map((d) => [d, []]));
  try {
    for (const set of job.sets) {
      const chosen = seededSample(set.queryIds.length, job.maxQueries ?? set.queryIds.length, job.seed);
      const baseTop = job.candidates.base.get(set.name)!;
      const ftTop = job.candidates.finetuned?.get(set.name);
      const rankings = new Map<number, string[][]>(job.depths.map((d) => [d, []]));
      const ms = new Map<number, Float64Array>(job.depths.map((d) => [d, new Float64Array(chosen.length)]));
      const ftRankings: string[][] = [];
      const warm = baseTop[chosen[0]!]!;
      await ce.score(set.texts[chosen[0]!]!, Array.from(warm.subarray(0, maxDepth), (j) => job.corpus.texts[j]!));
      for (let k = 0; k < chosen.length; k++) {
        job.signal.throwIfAborted();
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
