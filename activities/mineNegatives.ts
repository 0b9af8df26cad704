import { Field, Float64, List, Table, vectorFromArray } from 'apache-arrow';
import { z } from 'zod';
import { readParquet, writeParquet } from '../artifacts/parquet.ts';
import { defineStage } from '../pipelines/stage.ts';
import { textsOf } from './embed.ts';
import { Encoder } from './embedding/encoder.ts';
import { embedWithMemo, openEmbeddingMemo } from './embedding/memoEmbed.ts';
import { mineHardNegatives, resolvedRangeMax } from './embedding/mining.ts';
import { InvalidInputError } from './errors.ts';
import { float64, stringColumn, utf8, utf8List } from './evaluation/tables.ts';

export const NEGATIVES_FILE = 'negatives.parquet';

export const MineNegativesParams = z
  .object({
    numNegatives: z.number().int().min(1).max(64).default(3).describe('Negatives per query (sentence-transformers default: 3)'),
    margin: z
      .number()
      .gt(0)
      .max(1)
      .default(0.95)
      .describe('TopK-PercPos: drop candidates scoring above margin × the positive score (likely unlabelled positives)'),
    rangeMin: z.number().int().min(0).default(0).describe('Skip this many of the best remaining candidates'),
    rangeMax: z
      .number()
      .int()
      .positive()
      .optional()
      .describe('Consider candidates up to this rank (default rangeMin + 10 × numNegatives)'),
    sampling: z.enum(['top', 'random']).default('top').describe("'top': the best eligible candidates; 'random': a seeded sample of them"),
    seed: z.number().int().default(42).describe("Seed of 'random' sampling"),
    variant: z.enum(['fp32', 'int8']).default('fp32').describe('ONNX graph used to embed'),
    batchSize: z.number().int().positive().max(1024).default(64).describe('Most texts per onnxruntime call'),
    search: z.enum(['auto', 'exact', 'approximate']).default('auto').describe("'auto': exact blocked search, usearch HNSW for very large inputs"),
  })
  .refine((p) => p.rangeMin + p.numNegatives <= (p.rangeMax ?? p.rangeMin + 10 * p.numNegatives), {
    message: 'rangeMax must leave at least numNegatives candidates after rangeMin',
    path: ['rangeMax'],
  });

/**
 * `model` + `chunks` + `queries` → `hardNegatives` (negatives.parquet: query_id, chunk_id,
 * positive_score, negative_ids, negative_scores). Embeds through the shared memo, so texts embedded by
 * an earlier run or by the embed stage cost nothing here.
 */
export const mineNegatives = defineStage({
  kind: 'mineNegatives',
  description: 'Mine hard negatives per query with the base model, dropping likely false negatives (TopK-PercPos)',
  params: MineNegativesParams,
  inputs: { model: 'model', chunks: 'chunks', queries: 'queries' },
  output: 'hardNegatives',
  defaults: { queue: 'cpu', startToCloseTimeout: '12h', heartbeatTimeout: '5m', retry: { maximumAttempts: 3 } },
  async run(ctx) {
    const p = ctx.params;
    const chunks = await textsOf(ctx.inputs.chunks, 'chunks');
    const queries = await textsOf(ctx.inputs.queries, 'queries');
    if (chunks.ids.length === 0 || queries.ids.length === 0) {
      throw new InvalidInputError(`nothing to mine: ${chunks.ids.length} chunks, ${queries.ids.length} queries`, {
        where: `stage "${ctx.stageId}"`,
        hint: 'check the chunk and query stages upstream produced rows',
      });
    }
    const queriesPath = ctx.inputs.queries.file('queries.parquet');
    const positiveIds = stringColumn(await readParquet(queriesPath, ['chunk_id']), 'chunk_id', queriesPath);

    const encoder = await Encoder.load(ctx.inputs.model.dir, { variant: p.variant });
    const memo = await openEmbeddingMemo(ctx.store, ctx.inputs.model.digest, p.variant);
    try {
      const c = await embedWithMemo(encoder, memo, chunks.texts, {
        kind: 'passage',
        batchSize: p.batchSize,
        signal: ctx.signal,
        onProgress: (done, total) => ctx.progress({ done, total, unit: 'texts', message: 'embedding chunks' }),
      });
      const q = await embedWithMemo(encoder, memo, queries.texts, {
        kind: 'query',
        batchSize: p.batchSize,
        signal: ctx.signal,
        onProgress: (done, total) => ctx.progress({ done, total, unit: 'texts', message: 'embedding queries' }),
      });
      const mined = await mineHardNegatives(
        {
          queryIds: queries.ids,
          queryTexts: queries.texts,
          positiveIds,
          chunkIds: chunks.ids,
          chunkTexts: chunks.texts,
          queries: q.embeddings,
          chunks: c.embeddings,
        },
        { numNegatives: p.numNegatives, margin: p.margin, rangeMin: p.rangeMin, rangeMax: p.rangeMax, sampling: p.sampling, seed: p.seed },
        {
          method: p.search,
          signal: ctx.signal,
          onProgress: (done, n) => ctx.progress({ done, total: n, unit: 'queries', message: 'searching' }),
        },
      );
      const r = mined.rows;
      const table = new Table({
        query_id: utf8(r.map((x) => queries.ids[x.query] as string)),
        chunk_id: utf8(r.map((x) => chunks.ids[x.positive] as string)),
        positive_score: float64(r.map((x) => x.positiveScore)),
        negative_ids: utf8List(r.map((x) => x.negatives.map((n) => chunks.ids[n] as string))),
        negative_scores: vectorFromArray(
          r.map((x) => x.negativeScores),
          new List(new Field('item', new Float64(), true)),
        ),
      });
      await writeParquet(await ctx.out.file(NEGATIVES_FILE), table);
      const s = mined.stats;
      return {
        stats: {
          queries: s.queries,
          queriesComplete: s.queriesComplete,
          queriesShort: s.queriesShort,
          queriesWithoutPositive: s.queriesWithoutPositive,
          negatives: s.negatives,
          removedByMargin: s.removedByMargin,
          removedPositives: s.removedPositives,
          removedDuplicates: s.removedDuplicates,
          embeddingsComputed: encoder.modelCalls,
          memoHits: c.memoHits + q.memoHits,
        },
        rows: { [NEGATIVES_FILE]: r.length },
        meta: {
          model: encoder.info.name,
          modelDigest: ctx.inputs.model.digest,
          variant: p.variant,
          rangeMax: resolvedRangeMax(p),
          mining: s,
        },
      };
    } finally {
      await memo.close();
      await encoder.release();
    }
  },
});
