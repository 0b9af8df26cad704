import { Table, type Vector } from 'apache-arrow';
import { writeParquet } from '../../artifacts/parquet.ts';
import type { Example } from '../embedding/dataset.ts';
import { utf8, utf8List } from '../evaluation/tables.ts';

/**
 * A `dataset` artifact: train.parquet and dev.parquet with columns anchor, positive, negative_1..k
 * (what sentence-transformers trains on directly) plus query_id, chunk_id, negative_ids; and
 * dataset_card.md. The train stage hands the Parquet paths to the Python kernel, which reads them.
 */
export const TRAIN_FILE = 'train.parquet';
export const DEV_FILE = 'dev.parquet';
export const DATASET_CARD_FILE = 'dataset_card.md';

/** Training rows with their first `k` negatives, one negative_i column each. */
export function datasetTable(rows: readonly Example[], k: number): Table {
  const cols: Record<string, Vector> = { anchor: utf8(rows.map((r) => r.anchor)), positive: utf8(rows.map((r) => r.positive)) };
  for (let i = 0; i < k; i++) cols[`negative_${i + 1}`] = utf8(rows.map((r) => r.negatives[i] as string));
  cols.query_id = utf8(rows.map((r) => r.queryId));
  cols.chunk_id = utf8(rows.map((r) => r.chunkId));
  cols.negative_ids = utf8List(rows.map((r) => r.negativeIds.slice(0, k)));
  return new Table(cols);
}

export async function writeDatasetSplit(path: string, rows: readonly Example[], k: number): Promise<void> {
  await writeParquet(path, datasetTable(rows, k));
}
