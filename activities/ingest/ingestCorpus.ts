import { ParquetStreamWriter } from '../../artifacts/parquet.ts';
import { CorpusEmptyError } from '../../core/errors.ts';
import { byPath, listCorpus, type Skipped, skippedText } from './corpus.ts';
import { type DocumentRow, documentsTable } from '../artifactKinds/documentsArtifact.ts';
import { readDocument } from './documents.ts';
import type { NormalizationForm } from './normalize.ts';

export interface IngestOptions {
  normalize: NormalizationForm;
  /** Documents with more text than this are skipped (with the reason). Default: no limit. */
  maxDocumentBytes?: number;
  /** Called after each file with how far it has come. */
  onProgress?: (p: { done: number; total: number; path: string }) => void;
  signal?: AbortSignal;
}

export interface IngestSummary {
  documents: number;
  skipped: Skipped[];
  /** UTF-8 bytes of the normalised text written. */
  textBytes: number;
  /** Encodings met (utf-8, shift_jis, pdf...) and how many files had each. */
  encodings: Record<string, number>;
}

// Rows are handed to the Parquet writer in small batches so a corpus never sits in memory: at most
// BATCH_DOCS documents or BATCH_BYTES of text (one huge document is a batch of its own). Row groups
// hold ROW_GROUP_DOCS documents: what a reader of the file (the chunk stage) holds at once.
const BATCH_DOCS = 64;
const BATCH_BYTES = 32 << 20;
const ROW_GROUP_DOCS = 16;

/**
 * Read every file of a corpus folder into `outPath` (a documents Parquet file), one document at a
 * time. Unreadable files are skipped and listed with their reason; a corpus that yields no document
 * at all is a CorpusEmptyError, and then nothing is written.
 */
export async function ingestCorpus(root: string, outPath: string, opts: IngestOptions): Promise<IngestSummary> {
  const { files, skipped } = await listCorpus(root);
  const writer = await ParquetStreamWriter.open(outPath, documentsTable([]).schema, { rowGroupSize: ROW_GROUP_DOCS });
  const summary: IngestSummary = { documents: 0, skipped, textBytes: 0, encodings: {} };
  let batch: DocumentRow[] = [];
  let batchBytes = 0;
  const flush = async (): Promise<void> => {
    await writer.write(documentsTable(batch));
    batch = [];
    batchBytes = 0;
  };
  try {
    for (const [i, file] of files.entries()) {
      opts.signal?.throwIfAborted();
      const r = await readDocument(file, opts.normalize, opts.maxDocumentBytes);
      if (r.ok) {
        const bytes = Buffer.byteLength(r.doc.text) + Buffer.byteLength(r.doc.raw_text);
        if (batch.length && batchBytes + bytes > BATCH_BYTES) await flush();
        batch.push(r.doc);
        batchBytes += bytes;
        summary.documents++;
        summary.textBytes += Buffer.byteLength(r.doc.text);
        summary.encodings[r.encoding] = (summary.encodings[r.encoding] ?? 0) + 1;
        if (batch.length >= BATCH_DOCS) await flush();
      } else {
        skipped.push({ path: file.path, reason: r.reason });
      }
      opts.onProgress?.({ done: i + 1, total: files.length, path: file.path });
    }
    if (summary.documents === 0) {
      throw new CorpusEmptyError(
        files.length === 0 && skipped.length === 0
          ? `the corpus folder ${root} is empty`
          : `no readable document in the corpus (${skipped.length} file(s) skipped: ${skippedText(skipped)})`,
        { where: root, hint: 'add .pdf, .html, .md or .txt files with text in them' },
      );
    }
    if (batch.length) await flush();
    await writer.close();
  } catch (err) {
    await writer.abort();
    throw err;
  }
  skipped.sort(byPath);
  return summary;
}
