import { writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { readParquet } from '../artifacts/parquet.ts';
import { defineStage } from '../dsl/stage.ts';
import { CHUNKS_FILE } from './artifactKinds/chunksArtifact.ts';
import { DATASET_CARD_FILE, DEV_FILE, TRAIN_FILE, writeDatasetSplit } from './artifactKinds/datasetArtifact.ts';
import { readNegativeIds } from './artifactKinds/hardNegativesArtifact.ts';
import { QUERIES_FILE } from './artifactKinds/queriesArtifact.ts';
import { type Example, datasetCard, splitByChunk, summarize } from './embedding/dataset.ts';
import { InvalidInputError } from '../core/errors.ts';
import { stringColumn } from './evaluation/tables.ts';

export const BuildDatasetParams = z.object({
  numNegatives: z
    .number()
    .int()
    .min(0)
    .max(64)
    .optional()
    .describe('negative_* columns to write (default: as many as were mined); rows with fewer negatives are dropped'),
  devFraction: z.number().min(0).max(0.9).default(0.1).describe('Share of chunks (with all their queries) held out as dev'),
  seed: z.number().int().default(42).describe('Seed of the train/dev split'),
});

async function textById(path: string, idColumn: string): Promise<Map<string, string>> {
  const t = await readParquet(path, [idColumn, 'text']);
  const ids = stringColumn(t, idColumn, path);
  const texts = stringColumn(t, 'text', path);
  return new Map(ids.map((id, i) => [id, texts[i] as string]));
}

/**
 * `queries` + `chunks` + `hardNegatives` → `dataset`: train.parquet and dev.parquet with columns
 * anchor, positive, negative_1..k (what sentence-transformers trains on directly) plus query_id,
 * chunk_id, negative_ids; split grouped by chunk; dataset_card.md.
 */
export const buildDataset = defineStage({
  kind: 'buildDataset',
  description: 'Assemble (anchor, positive, negatives) training rows, split train/dev by chunk, write a dataset card',
  params: BuildDatasetParams,
  inputs: { queries: 'queries', chunks: 'chunks', negatives: 'hardNegatives' },
  output: 'dataset',
  defaults: { queue: 'cpu', startToCloseTimeout: '1h', heartbeatTimeout: '5m', retry: { maximumAttempts: 3 } },
  async run(ctx) {
    const p = ctx.params;
    const chunkText = await textById(ctx.inputs.chunks.file(CHUNKS_FILE), 'chunk_id');
    const queryText = await textById(ctx.inputs.queries.file(QUERIES_FILE), 'query_id');

    const mined = await readNegativeIds(ctx.inputs.negatives);
    const nQuery = mined.map((m) => m.query_id);
    const nChunk = mined.map((m) => m.chunk_id);
    const nIds = mined.map((m) => m.negative_ids);
    const k = p.numNegatives ?? Math.max(0, ...nIds.map((ids) => ids.length));

    const dropped = { 'fewer negatives than numNegatives': 0, 'query or chunk not in the inputs': 0 };
    const examples: Example[] = [];
    nQuery.forEach((queryId, i) => {
      const anchor = queryText.get(queryId);
      const positive = chunkText.get(nChunk[i] as string);
      const negIds = nIds[i] as string[];
      const negatives = negIds.slice(0, k).map((id) => chunkText.get(id));
      if (anchor === undefined || positive === undefined || negatives.some((t) => t === undefined)) {
        dropped['query or chunk not in the inputs']++;
        return;
      }
      if (negIds.length < k) {
        dropped['fewer negatives than numNegatives']++;
        return;
      }
      examples.push({ queryId, chunkId: nChunk[i] as string, anchor, positive, negatives: negatives as string[], negativeIds: negIds.slice(0, k) });
    });
    if (examples.length === 0) {
      throw new InvalidInputError(`no training rows: all ${nQuery.length} mined queries were dropped (${JSON.stringify(dropped)})`, {
        where: `stage "${ctx.stageId}"`,
        hint: 'wire the same chunks and queries artifacts that the mining stage used, or lower numNegatives',
      });
    }

    const { train, dev } = splitByChunk(examples, p.devFraction, p.seed);
    await writeDatasetSplit(await ctx.out.file(TRAIN_FILE), train, k);
    await writeDatasetSplit(await ctx.out.file(DEV_FILE), dev, k);
    const summary = { train: summarize(train), dev: summarize(dev) };
    const mining = ctx.inputs.negatives.manifest;
    await writeFile(
      await ctx.out.file(DATASET_CARD_FILE),
      datasetCard({
        numNegatives: k,
        devFraction: p.devFraction,
        seed: p.seed,
        ...summary,
        dropped,
        mining: { params: mining.lineage.params ?? {}, stats: (mining.meta.stats ?? {}) as Record<string, unknown> },
        inputs: { queries: ctx.inputs.queries.digest, chunks: ctx.inputs.chunks.digest, negatives: ctx.inputs.negatives.digest },
      }),
    );
    return {
      stats: {
        trainRows: train.length,
        devRows: dev.length,
        trainChunks: summary.train.chunks,
        devChunks: summary.dev.chunks,
        numNegatives: k,
        dropped: Object.values(dropped).reduce((a, b) => a + b, 0),
      },
      rows: { [TRAIN_FILE]: train.length, [DEV_FILE]: dev.length },
      meta: { ...summary, dropped },
    };
  },
});
