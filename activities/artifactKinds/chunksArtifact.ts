import { Int32, Table, Utf8, type Vector, vectorFromArray } from 'apache-arrow';
import { readParquet, writeParquet } from '../../artifacts/parquet.ts';
import type { ArtifactReader } from '../../artifacts/store.ts';
import type { ChunkRow } from '../chunking/splitter.ts';
import type { ChunkSpan } from '../evaluation/relevance.ts';
import { numberColumn, stringColumn } from '../evaluation/tables.ts';

/** chunks.parquet of a `chunks` artifact: one row per chunk, its span in its document's text. */
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

/** Write chunk rows whole (the chunk stage streams them instead: chunkDocuments.ts). */
export async function writeChunks(path: string, rows: ChunkRow[]): Promise<void> {
  await writeParquet(path, chunksTable(rows));
}

export interface ChunkText {
  chunkId: string;
  text: string;
}

export async function readChunkTexts(input: ArtifactReader): Promise<ChunkText[]> {
  const where = input.file(CHUNKS_FILE);
  const t = await readParquet(where, ['chunk_id', 'text']);
  const ids = stringColumn(t, 'chunk_id', where);
  const texts = stringColumn(t, 'text', where);
  return ids.map((chunkId, i) => ({ chunkId, text: texts[i]! }));
}

/** Each chunk's span in its document's text. */
export async function readChunkSpans(input: ArtifactReader): Promise<ChunkSpan[]> {
  const where = input.file(CHUNKS_FILE);
  const t = await readParquet(where, ['chunk_id', 'doc_id', 'start', 'end']);
  const ids = stringColumn(t, 'chunk_id', where);
  const docIds = stringColumn(t, 'doc_id', where);
  const starts = numberColumn(t, 'start', where);
  const ends = numberColumn(t, 'end', where);
  return ids.map((chunk_id, i) => ({ chunk_id, doc_id: docIds[i]!, start: starts[i]!, end: ends[i]! }));
}
