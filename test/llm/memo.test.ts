import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalStore } from '../../artifacts/store.ts';
import { generateQueries } from '../../activities/generateQueries.ts';
import { readQueries } from '../../activities/artifactKinds/queriesArtifact.ts';
import type { Progress } from '../../dsl/stage.ts';
import { LlmServer } from '../support/llmServer.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { type Doc, JA_DOCS, chunksArtifact, llmEnv } from './fixtures.ts';

// The per-chunk memo, counted where the money is spent: at the LLM server. (The worker-kill version
// of the resume test runs through the engine's harness; here the stage is cancelled mid-run.)

let server: LlmServer;
let store: LocalStore;

beforeAll(async () => {
  server = await LlmServer.start({ env: llmEnv, servedModel: 'gemma-test', threads: 1, parallel: 1, templates: 1 });
  store = await tempStore('ef-llm-memo-');
});
afterAll(async () => {
  await server?.close();
});

function params(seed: number) {
  return {
    llm: { provider: 'openai', baseUrl: server.url, model: 'gemma-test', timeoutMs: 60_000 },
    queriesPerChunk: 1,
    styles: ['question'],
    maxTokensPerQuery: 24,
    seed,
  };
}

describe('per-chunk memo', () => {
  it('a rerun calls the LLM for no chunk; a rerun after one document changed calls it only for that document', async () => {
    const first = await chunksArtifact(store, JA_DOCS);
    const r1 = await runStage(generateQueries, { store, inputs: { chunks: first.digest }, params: params(0) });
    expect(r1.stats).toMatchObject({ chunks: 4, llmCalls: 4, memoHits: 0 });
    expect(server.calls).toHaveLength(4);

    const r2 = await runStage(generateQueries, { store, inputs: { chunks: first.digest }, params: params(0) });
    expect(server.calls).toHaveLength(4);
    expect(r2.stats).toMatchObject({ llmCalls: 0, memoHits: 4, promptTokens: 0 });
    expect(r2.digest).toBe(r1.digest);
    // Nothing left to ask: the rerun does not even need the server (here: a closed port).
    const offline = { ...params(0), llm: { ...params(0).llm, baseUrl: 'http://127.0.0.1:9/v1' } };
    const r2b = await runStage(generateQueries, { store, inputs: { chunks: first.digest }, params: offline });
    expect(r2b.digest).toBe(r1.digest);

    // Edit the second paragraph of tea.md. Its chunk ids change (the document's hash is in them), but
    // only the edited paragraph's text is new.
    const edited: Doc[] = [JA_DOCS[0]!, { path: 'tea.md', paragraphs: [JA_DOCS[1]!.paragraphs[0]!, '摘み取った茶葉は翌朝までに村の新しい工場で蒸され、乾燥される。工場は2019年に建て替えられた。'] }];
    const second = await chunksArtifact(store, edited);
    const r3 = await runStage(generateQueries, { store, inputs: { chunks: second.digest }, params: params(0) });
    expect(r3.stats).toMatchObject({ chunks: 4, llmCalls: 1, memoHits: 3 });
    expect(server.calls).toHaveLength(5);
    expect(server.calls[4]!.prompt).toContain('2019年に建て替えられた');
    // The output covers the new chunk ids: memo hits are keyed by text, rows by the current chunk.
    const rows = await readQueries(await store.open(r3.digest));
    expect(new Set(rows.map((r) => r.chunk_id))).toEqual(new Set(second.rows.map((c) => c.chunk_id)));
  });

  it('after a run is stopped mid-way, the retry pays only for the chunks not yet done', async () => {
    const docs: Doc[] = [
      { path: 'a.md', paragraphs: ['港の灯台は1872年に建てられ、1931年に電化された。', '灯台守の家は現在、難破船の博物館になっている。'] },
      { path: 'b.md', paragraphs: ['町の図書館は毎週月曜日が休館日である。', '図書館の二階には郷土資料室があり、古い地図を閲覧できる。'] },
    ];
    const { digest, rows: chunkRows } = await chunksArtifact(store, docs);
    const before = server.calls.length;
    const stop = new AbortController();
    let progress: Progress | undefined;
    const crashed = await runStage(generateQueries, {
      store,
      inputs: { chunks: digest },
      params: params(7),
      signal: stop.signal,
      onProgress: (p) => {
        progress = p;
        if (p.done >= 2) stop.abort(new Error('worker lost'));
      },
    }).catch((e: unknown) => e);
    expect(crashed).toBeInstanceOf(Error);
    expect(progress).toMatchObject({ done: 2, total: 4, unit: 'chunks' });
    const paidBefore = server.calls.slice(before).map((c) => c.prompt);
    const finished = chunkRows.filter((c) => paidBefore.some((p) => p.includes(c.text)));
    expect(finished.length).toBeGreaterThanOrEqual(2);

    const resumed = await runStage(generateQueries, { store, inputs: { chunks: digest }, params: params(7) });
    expect(resumed.stats.memoHits).toBeGreaterThanOrEqual(2);
    expect((resumed.stats.memoHits as number) + (resumed.stats.llmCalls as number)).toBe(4);
    // No chunk finished before the stop was paid for again.
    for (const c of finished) expect(server.callsFor(c.text), c.text).toBe(1);
    const rows = await readQueries(await store.open(resumed.digest));
    expect(new Set(rows.map((r) => r.chunk_id)).size).toBe(4);
  });
});
