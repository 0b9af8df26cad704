import { defineStage } from '../dsl/stage.ts';
import { GenerationParams } from './llm/config.ts';
import { LLM_STAGE_DEFAULTS, generationNeeds, runGeneration } from './llm/generation.ts';
import { PROMPT_FILES } from './llm/prompts.ts';
import { readChunkTexts } from './artifactKinds/chunksArtifact.ts';
import { QUERIES_FILE, writeQueries } from './artifactKinds/queriesArtifact.ts';

/**
 * Training queries: for every chunk, N queries it answers, spread over styles (question, keyword,
 * request), written by an LLM (the embedded llama.cpp model, or any OpenAI-compatible server) or
 * taken from the chunk itself (ict). Each chunk's result is memoised, so a crash, a resume or a rerun
 * on a grown corpus never pays twice for the same call. Relevance of a query = its chunk.
 */
export const generateQueries = defineStage({
  kind: 'generateQueries',
  description: 'Generate N search queries per chunk with an LLM (memoised per chunk).',
  params: GenerationParams,
  inputs: { chunks: 'chunks' },
  output: 'queries',
  codeFiles: PROMPT_FILES,
  defaults: LLM_STAGE_DEFAULTS,
  resources: (p, _inputs, env) => generationNeeds(p, env),
  async run(ctx) {
    const chunks = await readChunkTexts(ctx.inputs.chunks);
    const g = await runGeneration(ctx, ctx.params, chunks);
    await writeQueries(await ctx.out.file(QUERIES_FILE), g.rows);
    return {
      rows: { [QUERIES_FILE]: g.rows.length },
      stats: { ...g.stats },
      meta: {
        provider: g.provider,
        model: g.model,
        language: g.language,
        memoNamespace: g.memoNamespace,
        totals: g.totals,
      },
    };
  },
});
