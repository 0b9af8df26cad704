import { Field, Float64, List, Table, vectorFromArray } from 'apache-arrow';
import { readParquet, writeParquet } from '../../artifacts/parquet.ts';
import type { ArtifactReader } from '../../artifacts/store.ts';
import { float64, stringColumn, stringListColumn, utf8, utf8List } from '../evaluation/tables.ts';

/** negatives.parquet of a `hardNegatives` artifact: per query, its positive chunk and the negatives mined for it. */
export const NEGATIVES_FILE = 'negatives.parquet';

export interface NegativeRow {
  query_id: string;
  chunk_id: string;
  positive_score: number;
  negative_ids: string[];
  negative_scores: number[];
}

export function negativesTable(rows: readonly NegativeRow[]): Table {
  return new Table({
    query_id: utf8(rows.map((r) => r.query_id)),
    chunk_id: utf8(rows.map((r) => r.chunk_id)),
    positive_score: float64(rows.map((r) => r.positive_score)),
    negative_ids: utf8List(rows.map((r) => r.negative_ids)),
    negative_scores: vectorFromArray(
      rows.map((r) => r.negative_scores),
      new List(new Field('item', new Float64(), true)),
    ),
  });
}

export async function writeNegatives(path: string, rows: readonly NegativeRow[]): Promise<void> {
  await writeParquet(path, negativesTable(rows));
}

/** Which chunks were mined as negatives for which query (scores left out: the dataset needs ids only). */
export async function readNegativeIds(input: ArtifactReader): Promise<Array<Pick<NegativeRow, 'query_id' | 'chunk_id' | 'negative_ids'>>> {
  const where = input.file(NEGATIVES_FILE);
  const t = await readParquet(where, ['query_id', 'chunk_id', 'negative_ids']);
  const queryIds = stringColumn(t, 'query_id', where);
  const chunkIds = stringColumn(t, 'chunk_id', where);
  const negativeIds = stringListColumn(t, 'negative_ids', where);
  return queryIds.map((query_id, i) => ({ query_id, chunk_id: chunkIds[i]!, negative_ids: negativeIds[i]! }));
}
