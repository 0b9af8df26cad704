import { sha256 } from '../../artifacts/hash.ts';
import type { Memo } from '../../artifacts/memo.ts';
import type { ActivitySpec, ResourceNeeds, StageContext, StageEnv } from '../../dsl/stage.ts';
import { localLlmNeeds } from '../resourceEstimates.ts';
import { type GenerationParams, identityHash, openProvider, providerIdentity, stylePlan } from './config.ts';
import { resolveGguf } from './gguf.ts';
import { corpusLanguage } from './language.ts';
import type { ChunkText } from '../artifactKinds/chunksArtifact.ts';
import type { QueryRow } from '../artifactKinds/queriesArtifact.ts';
import type { ChunkGeneration, Language, QueryProvider } from './types.ts';

/**
 * Activity options of the stages that call an LLM. A server down at night: keep trying for ~45 min
 * (answered chunks are memoised, so waiting costs nothing); `status` shows the error meanwhile, and
 * after that `resume` continues the run.
 */
/**
 * What a generation stage needs of its worker: llama.cpp in this process for 'local' (its cores, or
 * one with the layers on a GPU); nothing for a server or ICT. A GGUF that cannot be found is sized
 * by default here and reported by `run`.
 */
export async function generationNeeds(params: GenerationParams, env: StageEnv): Promise<ResourceNeeds> {
  const llm = params.llm;
  if (llm.provider !== 'local') return {};
  const path = await resolveGguf(llm.model, env).catch(() => undefined);
  return localLlmNeeds(path, llm.contextSize, llm.gpu ? 1 : llm.threads);
}

export const LLM_STAGE_DEFAULTS: ActivitySpec = {
  queue: 'cpu',
  startToCloseTimeout: '24h',
  heartbeatTimeout: '10m',
  retry: { maximumAttempts: 12, initialInterval: '10s', maximumInterval: '5m' },
};

/**
 * The machinery of the generation stages: every chunk through the provider, `concurrency` at a time,
 * each chunk's result memoised and flushed as it arrives (an fsync costs milliseconds, the calls it
 * saves cost seconds and money), so a crash loses only the chunks in flight, a retry continues where
 * the last attempt stopped, and a rerun on a grown corpus pays only for chunks whose text (or the
 * generation settings) changed.
 */

export interface GenerationStats {
  chunks: number;
  queries: number;
  llmCalls: number;
  memoHits: number;
  retries: number;
  malformed: number;
  repairs: number;
  promptTokens: number;
  completionTokens: number;
  chunksWithoutQueries: number;
}

export interface GenerationOutcome {
  rows: QueryRow[];
  stats: GenerationStats;
  language: Language;
  provider: string;
  model: string;
  memoNamespace: string;
  /** Cost of everything in the artifact, memoised chunks included (stats count this run only). */
  totals: { llmCalls: number; malformed: number; promptTokens: number; completionTokens: number };
}

export function queryId(chunkId: string, style: string, text: string): string {
  return sha256(`${chunkId}\n${style}\n${text}`).slice(0, 16);
}

/** A stable sample of chunks: the `max` with the smallest hash of their id. */
export function sampleChunks(chunks: ChunkText[], max: number | undefined): ChunkText[] {
  if (max === undefined || chunks.length <= max) return chunks;
  const keep = new Set(
    chunks
      .map((c) => ({ id: c.chunkId, h: sha256(`sample\n${c.chunkId}`) }))
      .sort((a, b) => (a.h < b.h ? -1 : a.h > b.h ? 1 : 0))
      .slice(0, max)
      .map((c) => c.id),
  );
  return chunks.filter((c) => keep.has(c.chunkId));
}

export async function runGeneration(
  ctx: Pick<StageContext<unknown>, 'env' | 'store' | 'signal' | 'progress' | 'log'>,
  params: GenerationParams,
  allChunks: ChunkText[],
): Promise<GenerationOutcome> {
  const chunks = sampleChunks(allChunks, params.maxChunks);
  const language: Language = params.language === 'auto' ? corpusLanguage(chunks.map((c) => c.text)) : params.language;
  const who = await providerIdentity(params, language, ctx.env);
  const idHash = identityHash(who.key);
  const memoNamespace = `llm/${idHash.slice(0, 24)}`;
  const memo: Memo<ChunkGeneration> = await ctx.store.memo<ChunkGeneration>(memoNamespace);
  const plan = stylePlan(params.queriesPerChunk, params.styles);
  const results: Array<ChunkGeneration | undefined> = new Array(chunks.length);
  const stats: GenerationStats = {
    chunks: chunks.length,
    queries: 0,
    llmCalls: 0,
    memoHits: 0,
    retries: 0,
    malformed: 0,
    repairs: 0,
    promptTokens: 0,
    completionTokens: 0,
    chunksWithoutQueries: 0,
  };
  const keyOf = (text: string) => sha256(`${idHash}\n${text}`);

  // Memoised chunks first, without touching the provider: on a resume they are simply done.
  let done = 0;
  const todo: number[] = [];
  chunks.forEach((c, i) => {
    const hit = memo.get(keyOf(c.text));
    if (hit) {
      results[i] = hit;
      stats.memoHits++;
      done++;
    } else {
      todo.push(i);
    }
  });
  // Sent per finished chunk (the engine turns it into a heartbeat), so `status` and the bars count
  // answered chunks as they come, memo hits included, and say what generation is waiting on.
  let phase = todo.length > 0 ? `opening ${who.provider} ${who.model}` : 'all chunks memoised';
  const report = () =>
    ctx.progress({ done, total: chunks.length, unit: 'chunks', message: phase, llmCalls: stats.llmCalls, memoHits: stats.memoHits });
  report();
  // Opened only when there is something to ask: a fully memoised rerun needs no server and no model.
  const provider = todo.length > 0 ? await openProvider(params, language, ctx.env, ctx.signal) : undefined;
  phase = `generating with ${who.provider} ${who.model}`;
  if (provider) report();
  if (provider) {
    ctx.log.info('generating queries', { provider: who.provider, model: who.model, chunks: todo.length, memoHits: stats.memoHits });
  }

  // A failure in one worker stops the others; whatever finished is flushed before the error surfaces.
  const stop = new AbortController();
  const signal = AbortSignal.any([ctx.signal, stop.signal]);
  // Flushes run one after another; each writes whatever was put since the previous one.
  let flushing: Promise<void> = Promise.resolve();
  const flush = () => (flushing = flushing.then(() => memo.flush()));
  let next = 0;
  let firstError: unknown;
  const worker = async (provider: QueryProvider) => {
    while (next < todo.length && !signal.aborted) {
      const i = todo[next++]!;
      const chunk = chunks[i]!;
      try {
        const gen = await provider.generate({ chunkId: chunk.chunkId, text: chunk.text }, plan, chunkSeed(params.seed, chunk.text), signal);
        memo.put(keyOf(chunk.text), gen);
        results[i] = gen;
        stats.llmCalls += gen.llmCalls;
        stats.retries += gen.retries;
        stats.malformed += gen.malformed;
        stats.repairs += gen.repairs;
        stats.promptTokens += gen.promptTokens;
        stats.completionTokens += gen.completionTokens;
        done++;
        await flush();
        report();
      } catch (err) {
        firstError ??= err;
        stop.abort(err);
      }
    }
  };
  try {
    if (provider) await Promise.all(Array.from({ length: Math.min(params.concurrency, todo.length) }, () => worker(provider)));
  } finally {
    await flush();
    await memo.close();
    await provider?.close();
  }
  if (firstError !== undefined) throw ctx.signal.aborted ? ctx.signal.reason : firstError;
  ctx.signal.throwIfAborted();

  const rows: QueryRow[] = [];
  const totals = { llmCalls: 0, malformed: 0, promptTokens: 0, completionTokens: 0 };
  chunks.forEach((chunk, i) => {
    const gen = results[i]!;
    totals.llmCalls += gen.llmCalls;
    totals.malformed += gen.malformed;
    totals.promptTokens += gen.promptTokens;
    totals.completionTokens += gen.completionTokens;
    if (gen.queries.length === 0) stats.chunksWithoutQueries++;
    for (const q of gen.queries) {
      rows.push({
        query_id: queryId(chunk.chunkId, q.style, q.text),
        chunk_id: chunk.chunkId,
        text: q.text,
        style: q.style,
        provider: who.provider,
        model: who.model,
        prompt_hash: q.promptHash,
        latency_ms: q.latencyMs,
        tokens: q.tokens,
      });
    }
  });
  stats.queries = rows.length;
  return { rows, stats, language, provider: who.provider, model: who.model, memoNamespace, totals };
}

/** A chunk's own seed: its answer must not depend on which other chunks ran or in what order. */
export function chunkSeed(seed: number, text: string): number {
  return (parseInt(sha256(`${seed}\n${text}`).slice(0, 8), 16) & 0x7fffffff) >>> 0;
}
