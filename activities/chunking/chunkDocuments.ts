import { ParquetStreamWriter, readParquetBatches } from '../../artifacts/parquet.ts';
import { chunksTable } from '../artifactKinds/chunksArtifact.ts';
import { type ChunkRow, iterateChunks, type SplitDocument, type SplitOptions } from './splitter.ts';
import type { TokenCounter } from './tokenizer.ts';

export interface ChunkSummary {
  documents: number;
  chunks: number;
  tokens: number;
  maxChunkTokens: number;
  textBytes: number;
}

const READ_COLUMNS = ['doc_id', 'path', 'format', 'content_hash', 'text', 'pages'];
// Documents are read a row group at a time and chunks written in batches: memory is bounded by a
// row group of documents (see ingestCorpus), whatever the corpus size.
const WRITE_BATCH = 4096;

/** Chunk every document of a documents Parquet file into a chunks Parquet file. */
export async function chunkDocuments(
  documentsPath: string,
  outPath: string,
  counter: TokenCounter,
  opts: SplitOptions,
  hooks: { onDocument?: (done: number) => void; signal?: AbortSignal } = {},
): Promise<ChunkSummary> {
  const writer = await ParquetStreamWriter.open(outPath, chunksTable([]).schema, { rowGroupSize: 16_384 });
  const summary: ChunkSummary = { documents: 0, chunks: 0, tokens: 0, maxChunkTokens: 0, textBytes: 0 };
  let pending: ChunkRow[] = [];
  try {
    for await (const batch of readParquetBatches(documentsPath, { columns: READ_COLUMNS })) {
      for (const row of batch) {
        hooks.signal?.throwIfAborted();
        const doc = row.toJSON() as unknown as SplitDocument;
        for (const c of iterateChunks(doc, counter, opts)) {
          pending.push(c);
          summary.tokens += c.tokens;
          summary.maxChunkTokens = Math.max(summary.maxChunkTokens, c.tokens);
          if (pending.length >= WRITE_BATCH) {
            summary.chunks += pending.length;
            await writer.write(chunksTable(pending));
            pending = [];
          }
        }
        summary.documents++;
        summary.textBytes += Buffer.byteLength(doc.text);
        hooks.onDocument?.(summary.documents);
      }
    }
    summary.chunks += pending.length;
    await writer.write(chunksTable(pending));
    await writer.close();
  } catch (err) {
    await writer.abort();
    throw err;
  }
  return summary;
}
