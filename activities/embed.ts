import { z } from 'zod';
import { readParquet } from '../artifacts/parquet.ts';
import type { ArtifactReader } from '../artifacts/store.ts';
import { defineStage } from '../dsl/stage.ts';
import { Encoder, type TextKind } from './embedding/encoder.ts';
import { encodingNeeds, onnxGraph, tableRows, vectorBytes } from './resourceEstimates.ts';
import { embedWithMemo, openEmbeddingMemo } from './embedding/memoEmbed.ts';
import { writeEmbeddings } from './embedding/tables.ts';
import { stringColumn } from './evaluation/tables.ts';
import { InvalidInputError } from '../core/errors.ts';
import { CHUNKS_FILE } from './artifactKinds/chunksArtifact.ts';
import { QUERIES_FILE } from './artifactKinds/queriesArtifact.ts';

export const EMBEDDINGS_FILE = 'embeddings.parquet';

export const EmbedParams = z.object({
  variant: z.enum(['fp32', 'int8']).default('fp32').describe('Which ONNX graph of the model runs: fp32, or int8 (faster, slightly less exact)'),
  batchSize: z.number().int().positive().max(1024).default(64).describe('Most texts per onnxruntime call (long texts go fewer at a time)'),
});

/** The texts an input artifact holds, with their ids and whether they are passages or queries. */
export async function textsOf(input: ArtifactReader, which: 'chunks' | 'queries'): Promise<{ ids: string[]; texts: string[]; kind: TextKind }> {
  const file = which === 'chunks' ? CHUNKS_FILE : QUERIES_FILE;
  const idColumn = which === 'chunks' ? 'chunk_id' : 'query_id';
  const path = input.file(file);
  const table = await readParquet(path, [idColumn, 'text']);
  return { ids: stringColumn(table, idColumn, path), texts: stringColumn(table, 'text', path), kind: which === 'chunks' ? 'passage' : 'query' };
}

/**
 * `model` + `chunks` (or `queries`) → `embeddings`: one vector per row, memoised per (model digest,
 * text) so a grown corpus embeds only its new texts, and mining/evaluation reuse what is here.
 */
export const embed = defineStage({
  kind: 'embed',
  description: 'Embed chunks (as passages) or queries with a model artifact, on onnxruntime-node',
  params: EmbedParams,
  inputs: { model: 'model', chunks: 'chunks?', queries: 'queries?' },
  output: 'embeddings',
  defaults: { queue: 'cpu', startToCloseTimeout: '12h', heartbeatTimeout: '5m', retry: { maximumAttempts: 3 } },
  resources: (p, inputs) => encodingNeeds([onnxGraph(inputs.model, p.variant)], vectorBytes(tableRows(inputs.chunks ?? inputs.queries))),
  async run(ctx) {
    const { chunks, queries, model } = ctx.inputs;
    if ((chunks === undefined) === (queries === undefined)) {
      throw new InvalidInputError('the embed stage takes exactly one of the inputs "chunks" and "queries"', {
        where: `stage "${ctx.stageId}"`,
        hint: 'use one embed stage per text set: embed({ model, chunks }) and embed({ model, queries })',
      });
    }
    const source = chunks ? await textsOf(chunks, 'chunks') : await textsOf(queries as ArtifactReader, 'queries');
    const encoder = await Encoder.load(model.dir, { variant: ctx.params.variant });
    const memo = await openEmbeddingMemo(ctx.store, model.digest, ctx.params.variant);
    try {
      const r = await embedWithMemo(encoder, memo, source.texts, {
        kind: source.kind,
        batchSize: ctx.params.batchSize,
        signal: ctx.signal,
        onProgress: (done, total) => ctx.progress({ done, total, unit: 'texts' }),
      });
      await writeEmbeddings(await ctx.out.file(EMBEDDINGS_FILE), source.ids, r.embeddings);
      return {
        stats: { texts: source.texts.length, embeddingsComputed: encoder.modelCalls, memoHits: r.memoHits, dim: encoder.dim },
        rows: { [EMBEDDINGS_FILE]: source.texts.length },
        meta: { model: encoder.info.name, modelDigest: model.digest, variant: ctx.params.variant, kind: source.kind },
      };
    } finally {
      await memo.close();
      await encoder.release();
    }
  },
});
