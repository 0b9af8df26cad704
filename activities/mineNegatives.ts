import { z } from 'zod';
import { readParquet } from '../artifacts/parquet.ts';
import { defineStage } from '../dsl/stage.ts';
import { NEGATIVES_FILE, writeNegatives } from './artifactKinds/hardNegativesArtifact.ts';
import { QUERIES_FILE } from './artifactKinds/queriesArtifact.ts';
import { textsOf } from './embed.ts';
import { Encoder } from './embedding/encoder.ts';
import { encodingNeeds, onnxGraph, tableRows, vectorBytes } from './resourceEstimates.ts';
import { embedWithMemo, openEmbeddingMemo } from './embedding/memoEmbed.ts';
import { mineHardNegatives } from './embedding/mining.ts';
import { InvalidInputError } from '../core/errors.ts';
import { stringColumn } from './evaluation/tables.ts';

/** A parameter that was renamed: any value is an error that names the new one (pipelines are code: edit the file). */
function renamed(to: string, how: string) {
  return z
    .never({ error: `renamed to ${to}, as sentence-transformers' mine_hard_negatives calls it: ${how}` })
    .optional()
    .describe(`Renamed: use ${to}`);
}

export const MineNegativesParams = z
  .object({
    numNegatives: z.number().int().min(1).max(64).default(3).describe('Negatives per query (num_negatives; sentence-transformers default: 3)'),
    rangeMin: z.number().int().min(0).default(0).describe('Skip this many of the best remaining candidates (range_min)'),
    rangeMax: z
      .number()
      .int()
      .positive()
      .optional()
      .describe('Consider remaining candidates up to this rank (range_max; default rangeMin + 10 × numNegatives + positives with a margin or maxScore, else rangeMin + numNegatives + positives)'),
    relativeMargin: z
      .number()
      .min(0)
      .lt(1)
      .nullable()
      .default(0.05)
      .describe('relative_margin: drop a candidate scoring above (1 − relativeMargin) × its positive (0.05: TopK-PercPos 95%, NV-Retriever; null: no relative margin, the sentence-transformers default)'),
    absoluteMargin: z.number().optional().describe('absolute_margin: drop a candidate scoring above positive − absoluteMargin (0: never above the positive)'),
    maxScore: z.number().optional().describe('max_score: drop candidates scoring above this'),
    minScore: z.number().optional().describe('min_score: drop candidates scoring below this'),
    samplingStrategy: z
      .enum(['top', 'random'])
      .default('top')
      .describe("sampling_strategy: 'top' takes the best eligible candidates; 'random' a seeded sample of them"),
    seed: z.number().int().default(42).describe("Seed of 'random' sampling and of fillShort"),
    fillShort: z
      .enum(['none', 'random'])
      .default('none')
      .describe(
        "A query with fewer than numNegatives eligible candidates (all within the margin of its positive): 'none' leaves it short, as sentence-transformers (the dataset stage then drops it); 'random' fills it with chunks drawn at random from below every searched candidate and the margin",
      ),
    variant: z.enum(['fp32', 'int8']).default('fp32').describe('ONNX graph used to embed'),
    batchSize: z.number().int().positive().max(1024).default(64).describe('Most texts per onnxruntime call'),
    search: z.enum(['auto', 'exact', 'approximate']).default('auto').describe("'auto': exact blocked search, usearch HNSW for very large inputs"),
    margin: renamed('relativeMargin', 'relativeMargin = 1 − margin, so margin 0.95 is relativeMargin 0.05'),
    sampling: renamed('samplingStrategy', "same values, 'top' or 'random'"),
  })
  .refine((p) => p.rangeMax === undefined || p.rangeMax - p.rangeMin >= p.numNegatives, {
    message: 'rangeMax must leave at least numNegatives candidates after rangeMin',
    path: ['rangeMax'],
  })
  .refine((p) => p.minScore === undefined || p.maxScore === undefined || p.minScore < p.maxScore, {
    message: 'minScore must be below maxScore',
    path: ['minScore'],
  });

/**
 * `model` + `chunks` + `queries` → `hardNegatives` (negatives.parquet: query_id, chunk_id,
 * positive_score, negative_ids, negative_scores). Embeds through the shared memo, so texts embedded by
 * an earlier run or by the embed stage cost nothing here.
 */
export const mineNegatives = defineStage({
  kind: 'mineNegatives',
  description: 'Mine hard negatives per query with the base model, dropping likely false negatives (sentence-transformers mine_hard_negatives semantics)',
  params: MineNegativesParams,
  inputs: { model: 'model', chunks: 'chunks', queries: 'queries' },
  output: 'hardNegatives',
  defaults: { queue: 'cpu', startToCloseTimeout: '12h', heartbeatTimeout: '5m', retry: { maximumAttempts: 3 } },
  resources: (p, inputs) => encodingNeeds([onnxGraph(inputs.model, p.variant)], vectorBytes(tableRows(inputs.chunks) + tableRows(inputs.queries))),
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
    const queriesPath = ctx.inputs.queries.file(QUERIES_FILE);
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
        {
          numNegatives: p.numNegatives,
          rangeMin: p.rangeMin,
          rangeMax: p.rangeMax,
          absoluteMargin: p.absoluteMargin,
          relativeMargin: p.relativeMargin ?? undefined,
          maxScore: p.maxScore,
          minScore: p.minScore,
          samplingStrategy: p.samplingStrategy,
          seed: p.seed,
          fillShort: p.fillShort,
        },
        {
          method: p.search,
          signal: ctx.signal,
          onProgress: (done, n) => ctx.progress({ done, total: n, unit: 'queries', message: 'searching' }),
        },
      );
      const r = mined.rows;
      await writeNegatives(
        await ctx.out.file(NEGATIVES_FILE),
        r.map((x) => ({
          query_id: queries.ids[x.query] as string,
          chunk_id: chunks.ids[x.positive] as string,
          positive_score: x.positiveScore,
          negative_ids: x.negatives.map((n) => chunks.ids[n] as string),
          negative_scores: x.negativeScores,
        })),
      );
      const s = mined.stats;
      return {
        stats: {
          queries: s.queries,
          queriesComplete: s.queriesComplete,
          queriesShort: s.queriesShort,
          queriesWithoutPositive: s.queriesWithoutPositive,
          negatives: s.negatives,
          removedByMargin: s.removedByMargin,
          removedByScore: s.removedByScore,
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
          rangeMax: s.rangeMax,
          mining: s,
        },
      };
    } finally {
      await memo.close();
      await encoder.release();
    }
  },
});
