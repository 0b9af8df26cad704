import { Table, Utf8, type Vector, vectorFromArray } from 'apache-arrow';
import { readParquet, writeParquet } from '../../artifacts/parquet.ts';
import type { ArtifactReader } from '../../artifacts/store.ts';
import { stringColumn } from '../evaluation/tables.ts';
import type { DocFormat } from '../ingest/corpus.ts';

/** documents.parquet of a `documents` artifact: one row per ingested file. */
export const DOCUMENTS_FILE = 'documents.parquet';

/** One row of a `documents` artifact. */
export interface DocumentRow {
  /** sha256 of the relative path, 16 hex: stable while the file keeps its path. */
  doc_id: string;
  path: string;
  format: DocFormat;
  title: string;
  /** sha256 of `text`. */
  content_hash: string;
  /** Extracted and normalised text: what chunks index into. */
  text: string;
  /** The decoded file text (for PDF: the extracted text) before normalisation. */
  raw_text: string;
  /** JSON offset map, raw_text → text (see offsets.ts). */
  offset_map: string;
  /** JSON array of page start offsets in `text` (PDF only). */
  pages: string | null;
}

const COLUMNS = ['doc_id', 'path', 'format', 'title', 'content_hash', 'text', 'raw_text', 'offset_map', 'pages'] as const;

/** Rows as an Arrow table with plain Utf8 columns (pages nullable). */
export function documentsTable(rows: DocumentRow[]): Table {
  const cols: Record<string, Vector<Utf8>> = {};
  for (const c of COLUMNS) cols[c] = vectorFromArray(rows.map((r) => r[c]), new Utf8());
  return new Table(cols);
}

/** Write document rows whole (the ingest stage streams them instead: ingestCorpus.ts). */
export async function writeDocuments(path: string, rows: DocumentRow[]): Promise<void> {
  await writeParquet(path, documentsTable(rows));
}

/** What a gold answer span needs of each document: its raw text and the map from raw to normalised offsets. */
export type DocumentSource = Pick<DocumentRow, 'doc_id' | 'path' | 'raw_text' | 'offset_map'>;

export async function readDocumentSources(input: ArtifactReader): Promise<DocumentSource[]> {
  const where = input.file(DOCUMENTS_FILE);
  const t = await readParquet(where, ['doc_id', 'path', 'raw_text', 'offset_map']);
  const docIds = stringColumn(t, 'doc_id', where);
  const paths = stringColumn(t, 'path', where);
  const raws = stringColumn(t, 'raw_text', where);
  const maps = stringColumn(t, 'offset_map', where);
  return docIds.map((doc_id, i) => ({ doc_id, path: paths[i]!, raw_text: raws[i]!, offset_map: maps[i]! }));
}
