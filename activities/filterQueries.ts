import { z } from 'zod';
import { defineStage } from '../dsl/stage.ts';
import { InvalidInputError } from '../core/errors.ts';
import { type FilterOptions, applyTextFilters, noteRemoved } from './llm/filters.ts';
import { corpusLanguage } from './llm/language.ts';
import { readChunkTexts } from './artifactKinds/chunksArtifact.ts';
import { QUERIES_FILE, type QueryRow, readQueries, writeQueries } from './artifactKinds/queriesArtifact.ts';
import { roundTripConsistent } from './llm/roundTrip.ts';
import { encodingNeeds, onnxGraph, tableRows, vectorBytes } from './resourceEstimates.ts';

export const FilterParams = z
  .strictObject({
    minChars: z.number().int().min(1).default(4).describe('Drop queries shorter than this many characters'),
    maxChars: z.number().int().min(1).default(200).describe('Drop queries longer than this many characters'),
    language: z.enum(['auto', 'ja', 'en', 'any']).default('auto').describe("'auto': the corpus language (from the chunks); 'any': no check."),
    nearDuplicateThreshold: z.number().gt(0).max(1).nullable().default(0.7).describe('Trigram Jaccard similarity from which a query duplicates an earlier one; null turns it off.'),
    roundTripTopK: z.number().int().min(1).nullable().default(null).describe('Keep a query only if the base model (input `model`) ranks its own chunk in the top k; null: off.'),
  })
  .refine((p) => p.minChars <= p.maxChars, { message: 'minChars must not exceed maxChars', path: ['minChars'] });

/**
 * `queries` → `queries` with duplicates, near duplicates, off-length and off-language queries removed
 * and, with a `model` input and roundTripTopK, those the base model cannot trace back to their chunk.
 * How many each filter removed goes into the stats and the manifest (with examples).
 */
export const filterQueries = defineStage({
  kind: 'filterQueries',
  description: 'Drop duplicate, near-duplicate, off-length, off-language and (optionally) round-trip-inconsistent queries.',
  params: FilterParams,
  inputs: { queries: 'queries', chunks: 'chunks', model: 'model?' },
  output: 'queries',
  defaults: { queue: 'cpu', startToCloseTimeout: '6h', heartbeatTimeout: '5m', retry: { maximumAttempts: 3 } },
  // Text filters only are light; the round trip embeds every chunk and query with the model.
  resources: (p, inputs) =>
    p.roundTripTopK !== null && inputs.model
      ? encodingNeeds([onnxGraph(inputs.model)], vectorBytes(tableRows(inputs.chunks) + tableRows(inputs.queries)))
      : {},
  async run(ctx) {
    const p = ctx.params;
    const { model } = ctx.inputs;
    if (p.roundTripTopK !== null && !model) {
      throw new InvalidInputError('roundTripTopK is set but the stage has no `model` input to rank chunks with', {
        where: `stage "${ctx.stageId}"`,
        hint: "wire the base model in (inputs: { model: 'baseModel', ... }) or set roundTripTopK: null",
      });
    }
    const rows = await readQueries(ctx.inputs.queries);
    const chunks = await readChunkTexts(ctx.inputs.chunks);
    const known = new Set(chunks.map((c) => c.chunkId));
    const orphan = rows.find((r) => !known.has(r.chunk_id));
    if (orphan) {
      throw new InvalidInputError(`query ${orphan.query_id} belongs to chunk ${orphan.chunk_id}, which is not in the chunks input`, {
        where: `stage "${ctx.stageId}"`,
        hint: 'give the filter the same chunks artifact the queries were generated from',
      });
    }
    const language = p.language === 'any' ? undefined : p.language === 'auto' ? corpusLanguage(chunks.map((c) => c.text)) : p.language;
    const opts: FilterOptions = { minChars: p.minChars, maxChars: p.maxChars, language, nearDuplicateThreshold: p.nearDuplicateThreshold ?? undefined };
    const result = applyTextFilters(rows, opts);
    if (p.roundTripTopK !== null && model) {
      const ok = await roundTripConsistent(model, ctx.store, chunks, result.kept, p.roundTripTopK, {
        signal: ctx.signal,
        onProgress: (done, total, message) => ctx.progress({ done, total, unit: 'texts', message }),
      });
      const kept: QueryRow[] = [];
      result.kept.forEach((r, i) => (ok[i] ? kept.push(r) : noteRemoved(result, 'roundTrip', r.text)));
      result.kept = kept;
    }
    await writeQueries(await ctx.out.file(QUERIES_FILE), result.kept);
    return {
      rows: { [QUERIES_FILE]: result.kept.length },
      stats: { input: rows.length, kept: result.kept.length, ...result.removed },
      meta: { language: language ?? 'any', removed: result.removed, examples: result.examples },
    };
  },
});
