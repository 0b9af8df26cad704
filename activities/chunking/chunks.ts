import { Int32, Table, Utf8, type Vector, vectorFromArray } from 'apache-arrow';
import type { ChunkRow } from './splitter.ts';

export const CHUNKS_FILE = 'chunks.parquet';

const TEXT_COLUMNS = ['chunk_id', 'doc_id', 'path', 'text'] as const;

/** Rows as an Arrow table: plain Utf8 and Int32 columns (page nullable), in the contract's order. */
export function chunksTable(rows: ChunkRow[]): Table {
  const str = (c: (typeof TEXT_COLUMNS)[number] | 'heading'): Vector<Utf8> => vectorFromArray(rows.map((r) => r[c]), new Utf8());
  const int = (c: 'ordinal' | 'start' | 'end' | 'page' | 'tokens'): Vector<Int32> => vectorFromArray(rows.map((r) => r[c]), new Int32());
  return new Table({
    chunk_id: str('chunk_id'),
    doc_id: str('doc_id'),
    path: str('path'),
    ordinal: int('ordinal'),
    text: str('text'),
    start: int('start'),
    end: int('end'),
    heading: str('heading'),
    page: int('page'),
    tokens: int('tokens'),
  });
}
