import { z } from 'zod';
import { defineStage } from '../dsl/stage.ts';
import { GenerationParams } from './llm/config.ts';
import { applyTextFilters } from './llm/filters.ts';
import { LLM_STAGE_DEFAULTS, generationNeeds, runGeneration } from './llm/generation.ts';
import { PROMPT_FILES } from './llm/prompts.ts';
import { readChunkTexts } from './artifactKinds/chunksArtifact.ts';
import { QUERIES_FILE, readQueries, writeQueries } from './artifactKinds/queriesArtifact.ts';

export const EvalGenerationParams = GenerationParams.extend({
  /** Not the training seed: the same settings would write the same queries, all removed as duplicates. */
  seed: z.number().int().min(0).max(2 ** 31 - 1).default(1),
  /** Trigram Jaccard similarity from which a query duplicates a training query (or an earlier eval query). */
  nearDuplicateThreshold: z.number().gt(0).max(1).default(0.7),
  minChars: z.number().int().min(1).default(4),
  maxChars: z.number().int().min(1).default(200),
});

/**
 * A generated evaluation set: the generation machinery (memo included) with its own provider, model,
 * prompt and seed, e.g. a different and larger model than the one that wrote the training queries.
 * Queries that duplicate or nearly duplicate a training query are removed: an eval query the model
 * was trained on measures memory, not retrieval. (Human-written questions come in through
 * importQuestions instead.)
 */
export const generateEvalQueries = defineStage({
  kind: 'generateEvalQueries',
  description: 'Generate evaluation queries with their own model/prompt/seed, minus near duplicates of training queries.',
  params: EvalGenerationParams,
  inputs: { chunks: 'chunks', queries: 'queries' },
  output: 'evalQueries',
  codeFiles: PROMPT_FILES,
  defaults: LLM_STAGE_DEFAULTS,
  resources: (p, _inputs, env) => generationNeeds(p, env),
  async run(ctx) {
    const p = ctx.params;
    const chunks = await readChunkTexts(ctx.inputs.chunks);
    const training = await readQueries(ctx.inputs.queries);
    const g = await runGeneration(ctx, p, chunks);
    const filtered = applyTextFilters(g.rows, {
      minChars: p.minChars,
      maxChars: p.maxChars,
      language: g.language,
      nearDuplicateThreshold: p.nearDuplicateThreshold,
      against: training.map((q) => q.text),
    });
    await writeQueries(await ctx.out.file(QUERIES_FILE), filtered.kept);
    return {
      rows: { [QUERIES_FILE]: filtered.kept.length },
      stats: { ...g.stats, generated: g.rows.length, queries: filtered.kept.length, ...filtered.removed },
      meta: {
        provider: g.provider,
        model: g.model,
        language: g.language,
        memoNamespace: g.memoNamespace,
        totals: g.totals,
        removed: filtered.removed,
        examples: filtered.examples,
      },
    };
  },
});
