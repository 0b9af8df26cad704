import type { ChildProcess } from 'node:child_process';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { mkdtemp, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readChunkTexts } from '../../activities/artifactKinds/chunksArtifact.ts';
import { readQueries } from '../../activities/artifactKinds/queriesArtifact.ts';
import { LocalStore } from '../../artifacts/store.ts';
import type { PendingStage, RunView } from '../../cli/runs.ts';
import { llmEnv } from '../llm/fixtures.ts';
import { cli, collect, spawnCli, testEnv, until } from '../support/cli.ts';
import { LlmServer } from '../support/llmServer.ts';

// The LLM server goes away in the middle of a generation stage — nothing listens on its port, so
// every connection is refused — for longer than the HTTP retries inside one attempt last, and comes
// back on the same port. The stage's own retries (Temporal's backoff) must carry the run to the end,
// `status` must tell on-call what is going on meanwhile, and the chunks answered before the outage
// must not be paid for again (counted at the server).

const PIPELINE = 'test/fixtures/pipelines/frontRetrying.ts';
const MODEL = 'gemma-test';
const PARAGRAPHS = [
  '港の灯台は1872年に建てられ、1931年に電化された。',
  '灯台守の家は現在、難破船の博物館になっている。',
  '町の図書館は毎週月曜日が休館日である。',
  '図書館の二階には郷土資料室があり、古い地図を閲覧できる。',
  '駅前の市場では、毎朝六時から地元の野菜と魚が売られている。',
];
/** Chunks answered before the server goes away. */
const ANSWERED_BEFORE = 2;

/**
 * The server's address as the pipeline knows it: a loopback port that forwards to the LLM server
 * while up, and while down has nothing listening on it (connection refused), as when the server
 * process is gone. Going down drops the connections it holds, a request in flight included.
 */
class Gateway {
  private readonly server: Server;
  private readonly upstream: string;
  port = 0;
  down = false;
  /** Completions answered through the gateway, by their last user message. */
  readonly answered: string[] = [];
  /** Consulted for each completion request before it is forwarded: true takes the gateway down instead, once. */
  cutBefore: ((prompt: string) => boolean) | undefined;

  constructor(upstream: string) {
    this.upstream = upstream.replace(/\/v1$/, '');
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => res.destroy());
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/v1`;
  }

  async up(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    this.down = false;
  }

  takeDown(): Promise<void> {
    this.down = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    return closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body: Buffer[] = [];
    for await (const c of req) body.push(c as Buffer);
    const text = Buffer.concat(body).toString('utf8');
    const completion = req.method === 'POST' && req.url === '/v1/chat/completions';
    const messages = completion ? (JSON.parse(text) as { messages: Array<{ role: string; content: string }> }).messages : [];
    const prompt = messages.filter((m) => m.role === 'user').at(-1)?.content ?? '';
    if (completion && this.cutBefore?.(prompt)) {
      this.cutBefore = undefined;
      await this.takeDown();
      return;
    }
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const up = await fetch(`${this.upstream}${req.url}`, {
      method: req.method,
      headers: { 'content-type': 'application/json' },
      body: req.method === 'GET' ? undefined : text,
      signal: gone.signal,
    });
    const answer = await up.text();
    res.writeHead(up.status, { 'content-type': 'application/json' });
    res.end(answer);
    if (completion && up.ok) this.answered.push(prompt);
  }

  async close(): Promise<void> {
    if (!this.down) await this.takeDown();
  }
}

let server: LlmServer;
let gateway: Gateway;
let child: ChildProcess | undefined;

beforeAll(async () => {
  server = await LlmServer.start({ env: llmEnv, servedModel: MODEL, threads: 1, parallel: 1, templates: 1 });
  gateway = new Gateway(server.url);
  await gateway.up();
});
afterAll(async () => {
  if (child?.exitCode === null) child.kill('SIGKILL');
  await gateway?.close();
  await server?.close();
});

describe('LLM server outage', () => {
  it('a run whose LLM server is down for a while waits, says so in status, and completes without paying twice', async () => {
    const env = await testEnv();
    const corpus = await mkdtemp(join(tmpdir(), 'ef-outage-corpus-'));
    for (const [i, p] of PARAGRAPHS.entries()) await writeFile(join(corpus, `${i + 1}.txt`), `${p}\n`);
    // Down just before a new chunk's first call, once two chunks are answered: with one chunk in
    // flight at a time, those two are memoised by then, and the dropped call was never answered.
    // (A repair turn of an answered chunk carries no passage in its last message and goes through.)
    const answeredChunks = () => PARAGRAPHS.filter((p) => gateway.answered.some((a) => a.includes(p))).length;
    gateway.cutBefore = (prompt) => answeredChunks() >= ANSWERED_BEFORE && PARAGRAPHS.some((p) => prompt.includes(p));
    const llm = {
      provider: 'openai',
      baseUrl: gateway.url,
      model: MODEL,
      timeoutMs: 60_000,
      // Few, quick HTTP retries: an attempt gives up within a second, so the outage outlasts many.
      maxRetries: 2,
      backoffInitialMs: 100,
      backoffMaxMs: 400,
    };
    child = spawnCli(
      [
        'run', PIPELINE, '--corpus', corpus, '--json',
        '--set', `queries.llm=${JSON.stringify(llm)}`,
        '--set', 'queries.queriesPerChunk=1',
        '--set', 'queries.styles=["question"]',
        '--set', 'queries.maxTokensPerQuery=24',
      ],
      env,
    );
    let stderr = '';
    child.stderr?.on('data', (d) => (stderr += d));
    const result = collect(child, 300_000);

    await until(() => gateway.down, 150_000, 'the LLM server to go down after two chunks');
    const runId = await until(() => /^run (\S+)/m.exec(stderr)?.[1], 10_000, 'the run id');
    // What on-call sees while the server is down: the stage still running, retried, and why.
    let view: RunView | undefined;
    const retrying = await until(
      async () => {
        const s = await cli(['status', runId, '--json'], env);
        view = s.json as RunView | undefined;
        const p = view?.pending.find((x: PendingStage) => x.stage === 'queries');
        // Attempt 4 or later: three whole attempts failed while the server was down, with growing backoff.
        return p && p.attempt >= 4 && p.lastFailure ? p : undefined;
      },
      120_000,
      'status to show the queries stage retrying',
    );
    expect(view!.status).toBe('running');
    expect(view!.stages.find((s) => s.id === 'queries')?.status).toBe('running');
    expect(retrying.lastFailureType).toBe('LlmUnavailableError');
    expect(retrying.lastFailure).toMatch(/ECONNREFUSED/);
    expect(retrying.lastFailure).toContain(gateway.url);
    expect(retrying.progress).toMatchObject({ done: ANSWERED_BEFORE, total: PARAGRAPHS.length, unit: 'chunks' });
    // The text on-call reads says how long the stage has been retrying, not only since when.
    const text = await cli(['status', runId], env);
    expect(text.stdout).toMatch(/retrying queries: attempt \d+, retrying for \d+(\.\d)?s \(since \S+\); last error: LlmUnavailableError: /);

    // Back on the same port; no one touches the run.
    const port = gateway.port;
    await gateway.up();
    expect(gateway.port).toBe(port);

    const res = await result;
    expect(res.code, res.stderr).toBe(0);
    expect(res.json.status).toBe('completed');
    const stage = (id: string) => res.json.stages.find((s: { id: string }) => s.id === id);
    const store = new LocalStore(env.EMBEDFLOW_STORE);
    const chunks = await readChunkTexts(await store.open(stage('chunks').artifact));
    expect(chunks).toHaveLength(PARAGRAPHS.length);
    const rows = await readQueries(await store.open(stage('queries').artifact));
    expect(new Set(rows.map((r) => r.chunk_id))).toEqual(new Set(chunks.map((c) => c.chunkId)));
    // Every chunk paid for exactly once; the attempt that finished took the first two from the memo.
    for (const c of chunks) expect(server.callsFor(c.text), c.text).toBe(1);
    expect(stage('queries').stats).toMatchObject({ chunks: PARAGRAPHS.length, memoHits: ANSWERED_BEFORE });
  });
});
