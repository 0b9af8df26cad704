import { Table } from 'apache-arrow';
import { readParquet, writeParquet } from '../../artifacts/parquet.ts';
import type { ArtifactReader } from '../../artifacts/store.ts';
import { float64, int32, numberColumn, stringColumn, utf8 } from '../evaluation/tables.ts';
import type { QueryStyle } from '../llm/types.ts';

/** queries.parquet of the `queries` and `evalQueries` artifacts. Relevance of a query = its chunk_id. */
export const QUERIES_FILE = 'queries.parquet';

export interface QueryRow {
  query_id: string;
  chunk_id: string;
  text: string;
  style: QueryStyle;
  provider: string;
  model: string;
  prompt_hash: string;
  latency_ms: number;
  tokens: number;
}

export function queriesTable(rows: readonly QueryRow[]): Table {
  const s = (k: 'query_id' | 'chunk_id' | 'text' | 'style' | 'provider' | 'model' | 'prompt_hash') => utf8(rows.map((r) => r[k]));
  return new Table({
    query_id: s('query_id'),
    chunk_id: s('chunk_id'),
    text: s('text'),
    style: s('style'),
    provider: s('provider'),
    model: s('model'),
    prompt_hash: s('prompt_hash'),
    latency_ms: float64(rows.map((r) => r.latency_ms)),
    tokens: int32(rows.map((r) => r.tokens)),
  });
}

export async function writeQueries(path: string, rows: QueryRow[]): Promise<void> {
  await writeParquet(path, queriesTable(rows));
}

export async function readQueries(input: ArtifactReader): Promise<QueryRow[]> {
  const where = input.file(QUERIES_FILE);
  const t = await readParquet(where);
  const col = (name: string) => stringColumn(t, name, where);
  const ids = col('query_id');
  const chunkIds = col('chunk_id');
  const texts = col('text');
  const styles = col('style');
  const providers = col('provider');
  const models = col('model');
  const hashes = col('prompt_hash');
  const latencies = numberColumn(t, 'latency_ms', where);
  const tokens = numberColumn(t, 'tokens', where);
  return ids.map((query_id, i) => ({
    query_id,
    chunk_id: chunkIds[i]!,
    text: texts[i]!,
    style: styles[i]! as QueryStyle,
    provider: providers[i]!,
    model: models[i]!,
    prompt_hash: hashes[i]!,
    latency_ms: latencies[i]!,
    tokens: tokens[i]!,
  }));
}
