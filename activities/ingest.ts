import { z } from 'zod';
import { defineStage } from '../dsl/stage.ts';
import { byPath, type Skipped } from './ingest/corpus.ts';
import { DOCUMENTS_FILE } from './artifactKinds/documentsArtifact.ts';
import { ingestCorpus } from './ingest/ingestCorpus.ts';

export const IngestParams = z.object({
  normalize: z
    .enum(['NFKC', 'NFC', 'none'])
    .default('NFKC')
    .describe('Unicode normalisation of the text (raw_text keeps the file as decoded; offset_map maps one onto the other)'),
  maxDocumentMB: z
    .number()
    .positive()
    .default(64)
    .describe('Skip (and list) any document with more text than this: 64 MB is ~20M Japanese characters, far beyond a real document'),
});

const SnapshotSkipped = z.array(z.object({ path: z.string(), reason: z.string() })) satisfies z.ZodType<Skipped[]>;

/**
 * Corpus folder (a `files` snapshot) → `documents`: one row per readable .pdf/.html/.md/.txt file with
 * its normalised text. Files it cannot read are listed in the manifest (`meta.skipped`) with the reason.
 */
export const ingest = defineStage({
  kind: 'ingest',
  description: 'Read .pdf/.html/.md/.txt files (UTF-8, Shift_JIS, EUC-JP), extract and normalise their text',
  params: IngestParams,
  inputs: { corpus: 'files' },
  output: 'documents',
  defaults: { queue: 'cpu', startToCloseTimeout: '2h', heartbeatTimeout: '5m', retry: { maximumAttempts: 3 } },
  async run(ctx) {
    const summary = await ingestCorpus(ctx.inputs.corpus.dir, await ctx.out.file(DOCUMENTS_FILE), {
      normalize: ctx.params.normalize,
      maxDocumentBytes: ctx.params.maxDocumentMB * 2 ** 20,
      signal: ctx.signal,
      onProgress: (p) => ctx.progress({ done: p.done, total: p.total, unit: 'files', message: p.path }),
    });
    // Files the snapshot could not copy (permissions) never reached the folder: list them with the rest.
    const skipped = [...SnapshotSkipped.parse(ctx.inputs.corpus.manifest.meta.skipped ?? []), ...summary.skipped].sort(byPath);
    for (const s of skipped) ctx.log.warn(`skipped ${s.path}: ${s.reason}`);
    return {
      stats: { documents: summary.documents, skipped: skipped.length, textMB: +(summary.textBytes / 1e6).toFixed(3) },
      rows: { [DOCUMENTS_FILE]: summary.documents },
      meta: { skipped, encodings: summary.encodings },
    };
  },
});
