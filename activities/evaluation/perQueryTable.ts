import { Table } from 'apache-arrow';
import type { EvalSet } from './evalSets.ts';
import { METRIC_NAMES } from './metrics.ts';
import type { EvalSetName } from './metricsJson.ts';
import type { SystemScores } from './summary.ts';
import { float64, int32, utf8, utf8List } from './tables.ts';

/** per_query.parquet: one row per (eval set, system, query) with its metrics, latency and top 10, for digging into a figure. */
export function perQueryTable(sets: EvalSet[], scores: Map<EvalSetName, Map<string, SystemScores>>): Table {
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
