import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listFiles } from '../../artifacts/fsutil.ts';
import type { LocalStore } from '../../artifacts/store.ts';
import { LlmConfigError, LlmModelNotFoundError, LlmUnauthorizedError, type EmbedflowError } from '../../core/errors.ts';
import { generateQueries } from '../../activities/generateQueries.ts';
import { GenerationParams } from '../../activities/llm/config.ts';
import { runGeneration } from '../../activities/llm/generation.ts';
import { OpenAiCompatibleBackend } from '../../activities/llm/openaiCompatible.ts';
import { readChunkTexts } from '../../activities/artifactKinds/chunksArtifact.ts';
import { readQueries } from '../../activities/artifactKinds/queriesArtifact.ts';
import { type Progress, type StageEnv } from '../../dsl/stage.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { FaultProxy } from '../support/faultProxy.ts';
import { LlmServer } from '../support/llmServer.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { JA_DOCS, chunksArtifact, llmEnv } from './fixtures.ts';

// The openai provider against a real OpenAI-compatible server on loopback that answers with the
// real local model, with a fault-injecting proxy in between. Tiny generations (2 cores).

const KEY = 'sk-embedflow-test-0123456789abcdef';
const MODEL = 'gemma-test';

let server: LlmServer;
let store: LocalStore;
let chunks: string;

beforeAll(async () => {
  server = await LlmServer.start({ env: llmEnv, servedModel: MODEL, apiKey: KEY, threads: 1, parallel: 2, templates: 1 });
  store = await tempStore('ef-llm-openai-');
  chunks = (await chunksArtifact(store, JA_DOCS)).digest;
});
afterAll(async () => {
  await server?.close();
});

function params(baseUrl: string, extra: Record<string, unknown> = {}) {
  return {
    llm: { provider: 'openai', baseUrl, model: MODEL, timeoutMs: 30_000, maxRetries: 10, backoffInitialMs: 50, backoffMaxMs: 400, ...extra },
    queriesPerChunk: 1,
    styles: ['question'],
    maxTokensPerQuery: 28,
    concurrency: 2,
  };
}

describe('openai-compatible provider', () => {
  it('completes with every chunk covered through 20% 500s, 429s with Retry-After, hangs and malformed bodies', async () => {
    const proxy = await FaultProxy.start(server.url, {
      script: ['error500', 'rateLimit429', 'hang', 'malformed'],
      error500: 0.2,
      rateLimit429: 0.05,
      malformed: 0.05,
      retryAfterSeconds: 1,
      seed: 4,
    });
    try {
      const { digest, stats } = await runStage(generateQueries, {
        store,
        inputs: { chunks },
        params: params(proxy.url),
        vars: { EMBEDFLOW_LLM_API_KEY: KEY },
      });
      const rows = await readQueries(await store.open(digest));
      const chunkIds = (await readChunkTexts(await store.open(chunks))).map((c) => c.chunkId);
      expect(new Set(rows.map((r) => r.chunk_id))).toEqual(new Set(chunkIds));
      for (const r of rows) expect(r).toMatchObject({ provider: 'openai', model: MODEL, style: 'question' });
      expect(rows.every((r) => r.tokens > 0 && r.latency_ms > 0)).toBe(true);

      for (const fate of ['error500', 'rateLimit429', 'hang', 'malformed'] as const) expect(proxy.count(fate)).toBeGreaterThanOrEqual(1);
      // Every injected fault cost a retry (a slow answer on a busy machine may time out and cost one more).
      const faults = proxy.log.filter((r) => r.fate !== 'forward').length;
      expect(stats.retries).toBeGreaterThanOrEqual(faults);
      expect(stats.llmCalls).toBe(chunkIds.length + (stats.repairs as number));
      expect(stats.promptTokens).toBeGreaterThan(0);
      expect(stats.completionTokens).toBeGreaterThan(0);

      // The retry after the 429 waited at least its Retry-After.
      const i429 = proxy.log.findIndex((r) => r.fate === 'rateLimit429');
      const retry = proxy.log.slice(i429 + 1).find((r) => r.body === proxy.log[i429]!.body);
      expect(retry!.at - proxy.log[i429]!.at).toBeGreaterThanOrEqual(990);
    } finally {
      await proxy.close();
    }
    // Real generations plus a 30 s hang: minutes when other work shares the 2 cores.
  }, 480_000);

  it('fails fast on a wrong or missing API key, naming the variable and never the key', async () => {
    // A store of its own: with every chunk already memoised (the test above), a stage never calls
    // the server at all, so a wrong key would go unnoticed, as it should on a resume.
    const fresh = await tempStore('ef-llm-auth-');
    const freshChunks = (await chunksArtifact(fresh, JA_DOCS)).digest;
    const before = { calls: server.calls.length, received: server.received };
    const wrong = 'sk-wrong-key-9876543210';
    const err = (await runStage(generateQueries, { store: fresh, inputs: { chunks: freshChunks }, params: params(server.url), vars: { EMBEDFLOW_LLM_API_KEY: wrong } }).catch(
      (e: unknown) => e,
    )) as EmbedflowError;
    expect(err).toBeInstanceOf(LlmUnauthorizedError);
    expect(err.describe()).toMatch(/EMBEDFLOW_LLM_API_KEY/);
    expect(err.describe()).not.toContain(wrong);
    const missing = (await runStage(generateQueries, { store: fresh, inputs: { chunks: freshChunks }, params: params(server.url) }).catch((e: unknown) => e)) as EmbedflowError;
    expect(missing).toBeInstanceOf(LlmUnauthorizedError);
    expect(missing.describe()).toMatch(/no API key was sent.*|set the environment variable EMBEDFLOW_LLM_API_KEY/s);
    // One model-list request each, no completion attempted, no retries.
    expect(server.received - before.received).toBe(2);
    expect(server.calls.length).toBe(before.calls);
  });

  it("works from OpenAI's standard variables where the pipeline names no server or key variable", async () => {
    const fresh = await tempStore('ef-llm-envvars-');
    const freshChunks = (await chunksArtifact(fresh, JA_DOCS)).digest;
    const { baseUrl: _none, ...llm } = params(server.url).llm;
    const standard = { ...params(server.url), llm, maxChunks: 1 };
    const out = await runStage(generateQueries, { store: fresh, inputs: { chunks: freshChunks }, params: standard, vars: { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: KEY } });
    expect(Object.values(out.manifest.rows)[0]).toBeGreaterThan(0);
    const other = await tempStore('ef-llm-envvars-');
    const wrong = (await runStage(generateQueries, {
      store: other,
      inputs: { chunks: (await chunksArtifact(other, JA_DOCS)).digest },
      params: standard,
      vars: { OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'sk-wrong-key-9876543210' },
    }).catch((e: unknown) => e)) as EmbedflowError;
    expect(wrong).toBeInstanceOf(LlmUnauthorizedError);
    expect(wrong.describe()).toMatch(/OPENAI_API_KEY/);
    const nowhere = (await runStage(generateQueries, { store: fresh, inputs: { chunks: freshChunks }, params: { ...standard, seed: 1 } }).catch((e: unknown) => e)) as EmbedflowError;
    expect(nowhere).toBeInstanceOf(LlmConfigError);
    expect(nowhere.describe()).toMatch(/OPENAI_BASE_URL/);
  });

  it('fails fast on an unknown model, listing what the server serves', async () => {
    const before = { calls: server.calls.length, received: server.received };
    const p = params(server.url);
    const err = (await runStage(generateQueries, {
      store,
      inputs: { chunks },
      params: { ...p, llm: { ...p.llm, model: 'llm-jp-4-8b-typo' } },
      vars: { EMBEDFLOW_LLM_API_KEY: KEY },
    }).catch((e: unknown) => e)) as EmbedflowError;
    expect(err).toBeInstanceOf(LlmModelNotFoundError);
    expect(err.describe()).toContain('llm-jp-4-8b-typo');
    expect(err.describe()).toContain(MODEL);
    expect(server.received - before.received).toBe(1);

    // A server without a model list answers the completion itself with 404: not retried either.
    const backend = new OpenAiCompatibleBackend({ baseUrl: server.url, model: 'nope', apiKey: KEY, apiKeyEnv: 'X', timeoutMs: 5000, maxRetries: 5 });
    const req = { messages: [{ role: 'user' as const, content: 'hi' }], sampling: { temperature: 0, topP: 1, maxTokens: 4 }, seed: 1 };
    await expect(backend.complete(req)).rejects.toThrow(LlmModelNotFoundError);
    expect(server.received - before.received).toBe(2);

    // A wrong path is a configuration error, said as such.
    const wrongPath = new OpenAiCompatibleBackend({ baseUrl: server.url.replace('/v1', '/v2'), model: MODEL, apiKey: KEY, apiKeyEnv: 'X', timeoutMs: 5000, maxRetries: 5 });
    await expect(wrongPath.complete(req)).rejects.toThrow(LlmConfigError);
  });

  it('keeps the API key out of artifacts, the memo, manifests, progress, logs and errors', async () => {
    // Run the generation with capturing progress and log, on fresh chunks so calls are really made.
    const logs: unknown[] = [];
    const env: StageEnv = { ...llmEnv, projectRoot: PROJECT_ROOT, vars: { EMBEDFLOW_LLM_API_KEY: KEY } };
    const fresh = await chunksArtifact(store, [{ path: 'new.md', paragraphs: ['新しい橋は2020年に完成し、川の両岸の集落を結んでいる。'] }]);
    const out = await runGeneration(
      {
        env,
        store,
        signal: new AbortController().signal,
        progress: (p: Progress) => logs.push(p),
        log: { info: (m, a) => logs.push([m, a]), warn: (m, a) => logs.push([m, a]) },
      },
      GenerationParams.parse(params(server.url)),
      await readChunkTexts(await store.open(fresh.digest)),
    );
    expect(out.stats.llmCalls).toBeGreaterThan(0);
    expect(server.calls.at(-1)?.authorization).toBe(`Bearer ${KEY}`);
    expect(JSON.stringify([logs, out])).not.toContain(KEY);

    // Every file the store holds after all runs of this file (artifacts, manifests, memo segments,
    // cache entries, work dirs).
    const files = await listFiles(store.root);
    expect(files.some((f) => f.includes('memo/llm/'))).toBe(true);
    for (const f of files) expect((await readFile(join(store.root, f))).includes(KEY), f).toBe(false);
  });
});
