import { readFile } from 'node:fs/promises';
import { readParquet } from '../../artifacts/parquet.ts';
import type { ArtifactReader } from '../../artifacts/store.ts';
import { InvalidInputError } from '../../core/errors.ts';
import { type EvalSetName, MetricsJson } from '../evaluation/metricsJson.ts';
import { nullableNumberColumn, stringColumn, stringListColumn } from '../evaluation/tables.ts';

/** metrics.json of an `evaluation` artifact (copied as-is into the `report` artifact); schema: evaluation/metricsJson.ts. */
export const METRICS_FILE = 'metrics.json';
/** per_query.parquet of an `evaluation` artifact: each query's ranking per eval set and system. */
export const PER_QUERY_FILE = 'per_query.parquet';

export async function readMetricsText(input: ArtifactReader): Promise<string> {
  return readFile(input.file(METRICS_FILE), 'utf8');
}

/** metrics.json text as this version reads it; a file it cannot read is a clear error naming the artifact. */
export function parseMetrics(text: string, digest: string): MetricsJson {
  const parsed = MetricsJson.safeParse(JSON.parse(text));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidInputError(`${METRICS_FILE} does not match this version of the report: ${issue?.path.join('.')}: ${issue?.message}`, {
      where: `evaluation ${digest}`,
      hint: 'rerun the evaluate stage with the current code',
    });
  }
  return parsed.data;
}

export async function readMetrics(input: ArtifactReader): Promise<MetricsJson> {
  return parseMetrics(await readMetricsText(input), input.digest);
}

/** Pretty-printed with a trailing newline: people open this file. */
export function metricsText(metrics: MetricsJson): string {
  return `${JSON.stringify(metrics, null, 2)}\n`;
}

export interface PerQueryRow {
  evalSet: EvalSetName;
  system: string;
  queryId: string;
  rank: number | null;
  top10: string[];
  relevant: string[];
}

export async function readPerQuery(ev: ArtifactReader): Promise<PerQueryRow[]> {
  const where = ev.file(PER_QUERY_FILE);
  const t = await readParquet(where, ['eval_set', 'system', 'query_id', 'first_relevant_rank', 'top10', 'relevant_chunk_ids']);
  const sets = stringColumn(t, 'eval_set', where);
  const systems = stringColumn(t, 'system', where);
  const ids = stringColumn(t, 'query_id', where);
  const ranks = nullableNumberColumn(t, 'first_relevant_rank', where);
  const top10 = stringListColumn(t, 'top10', where);
  const relevant = stringListColumn(t, 'relevant_chunk_ids', where);
  return ids.map((queryId, i) => ({
    evalSet: sets[i] as EvalSetName,
    system: systems[i]!,
    queryId,
    rank: ranks[i]!,
    top10: top10[i]!,
    relevant: relevant[i]!,
  }));
}
