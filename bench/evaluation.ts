// The evaluation baseline: base MiniLM on JaQuAD-dev (101 Japanese Wikipedia articles, 3,939
// human-written questions with gold answer spans), through the real stages and the same runner the
// worker uses: ingest → chunk → importQuestions → prepareModel → evaluate → report.
//   node --import tsx bench/evaluation.ts [--data DIR] [--max-tokens 256] [--overlap 32]
//        [--max-queries N] [--reranker DIR --rerank-max-queries N] [--store DIR] [--probe-queries 500]
// Prints Recall@1/5/10/50, MRR@10, nDCG@10, MAP@100 with 95% CIs, per-query latency (embed + exact
// search; and reranking when a cross-encoder directory with ONNX is given, e.g. a trainReranker output), evaluation throughput in queries/s
// of wall and of this process's CPU time (the machine is shared: the wall figure also measures the
// neighbours), and where the HTML report is. Writes bench/results/evaluation.json.
// Every stage runs (no stage cache) in a fresh store (or --store DIR, whose embedding memo a rerun
// then reuses: the corpus is not embedded again).
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readParquet } from '../artifacts/parquet.ts';
import { LocalStore } from '../artifacts/store.ts';
import { Encoder } from '../activities/embedding/encoder.ts';
import { embedWithMemo, openEmbeddingMemo } from '../activities/embedding/memoEmbed.ts';
import { seededSample } from '../activities/evaluation/bootstrap.ts';
import { summarizeLatency } from '../activities/evaluation/latency.ts';
import { ExactIndex } from '../activities/evaluation/search.ts';
import { chunk } from '../activities/chunk.ts';
import { evaluate } from '../activities/evaluate.ts';
import { readEvalQuestions } from '../activities/artifactKinds/evalQuestionsArtifact.ts';
import { importQuestions } from '../activities/importQuestions.ts';
import { ingest } from '../activities/ingest.ts';
import { prepareModel } from '../activities/prepareModel.ts';
import { report } from '../activities/report.ts';
import type { StageKind } from '../dsl/stage.ts';
import { publishDir } from '../test/eval/fixtures.ts';
import { filesArtifact, runStage } from '../test/support/runStage.ts';
import { benchMachine } from './machine.ts';
import { CHUNKS_FILE } from '../activities/artifactKinds/chunksArtifact.ts';
import { readMetrics } from '../activities/artifactKinds/evaluationArtifact.ts';

const projectRoot = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    data: { type: 'string', default: join(projectRoot, '..', 'shared', 'data', 'jaquad-dev') },
    'max-tokens': { type: 'string', default: '256' },
    overlap: { type: 'string', default: '32' },
    'max-queries': { type: 'string' },
    reranker: { type: 'string' },
    'rerank-max-queries': { type: 'string', default: '300' },
    store: { type: 'string' },
    'probe-queries': { type: 'string', default: '500' },
  },
});

const machine = benchMachine();
const store = new LocalStore(values.store ?? (await mkdtemp(join(tmpdir(), 'ef-bench-eval-'))));
const timings: Array<{ stage: string; wall: number; cpu: number }> = [];

async function stage(name: string, kind: StageKind, opts: { params?: unknown; inputs?: Record<string, string | undefined> }): Promise<string> {
  const t = performance.now();
  const cpu = process.cpuUsage();
  const out = await runStage(kind, { store, ...opts });
  const u = process.cpuUsage(cpu);
  timings.push({ stage: name, wall: (performance.now() - t) / 1000, cpu: (u.user + u.system) / 1e6 });
  return out.digest;
}

const corpus = await filesArtifact(store, join(values.data!, 'docs'));
const documents = await stage('ingest', ingest, { inputs: { corpus } });
const chunks = await stage('chunk', chunk, {
  params: { maxTokens: Number(values['max-tokens']), overlap: Number(values.overlap) },
  inputs: { documents },
});
const questionsFile = await filesArtifact(store, join(values.data!, 'questions.jsonl'), 'file');
const evalQuestions = await stage('importQuestions', importQuestions, { inputs: { questions: questionsFile, documents, chunks } });
const base = await stage('prepareModel', prepareModel, { params: {} });
const evaluation = await stage('evaluate', evaluate, {
  params: {
    ...(values['max-queries'] ? { maxQueries: Number(values['max-queries']) } : {}),
    ...(values.reranker ? { rerankMaxQueries: Number(values['rerank-max-queries']) } : {}),
  },
  inputs: { base, chunks, evalQuestions, reranker: values.reranker ? await publishDir(store, resolve(values.reranker), 'reranker') : undefined },
});
const reportDigest = await stage('report', report, { inputs: { evaluation } });

const ev = await store.open(evaluation);
const m = await readMetrics(ev);
const chunkStats = (await store.readManifest(chunks)).meta['stats'];
const qStats = (await store.readManifest(evalQuestions)).meta['stats'];
const evalTiming = timings.find((t) => t.stage === 'evaluate')!;
const queries = m.meta.evalSets.human!.queries;

const f = (x: number) => x.toFixed(4);
console.log(`corpus ${values.data} — ${m.meta.corpus.documents} documents, ${m.meta.corpus.chunks} chunks (chunk stage, ${values['max-tokens']} tokens, overlap ${values.overlap})`);
console.log(`chunk stats ${JSON.stringify(chunkStats)}`);
console.log(`questions ${JSON.stringify(qStats)}`);
for (const [system, table] of Object.entries(m.human!)) {
  console.log(`\n${system} (${system.includes('+rerank@') ? m.meta.evalSets.human!.reranked : queries} queries)`);
  for (const [name, c] of Object.entries(table)) console.log(`  ${name.padEnd(10)} ${f(c.value)}  [${f(c.lo)}, ${f(c.hi)}]`);
}
console.log('\nlatency per query (ms)');
for (const [model, s] of Object.entries(m.latency['embed+search'])) {
  if (s) console.log(`  ${model} embed+search  p50 ${s.p50.toFixed(2)}  p95 ${s.p95.toFixed(2)}  p99 ${s.p99.toFixed(2)}  mean ${s.mean.toFixed(2)}  (n=${s.n})`);
}
for (const [depth, s] of Object.entries(m.latency.rerank)) {
  console.log(`  ${depth}  p50 ${s.p50.toFixed(1)}  p95 ${s.p95.toFixed(1)}  p99 ${s.p99.toFixed(1)}  mean ${s.mean.toFixed(1)}  (n=${s.n})`);
}
console.log(
  `\nevaluate stage: ${queries} queries in ${evalTiming.wall.toFixed(1)} s wall (${(queries / evalTiming.wall).toFixed(1)} queries/s), ` +
    `${evalTiming.cpu.toFixed(1)} s CPU of this process (${(queries / evalTiming.cpu).toFixed(1)} queries per CPU-second; onnxruntime threads included)`,
);
for (const t of timings) console.log(`  ${t.stage.padEnd(16)} ${t.wall.toFixed(1).padStart(7)} s wall ${t.cpu.toFixed(1).padStart(7)} s CPU`);
const reportPath = (await store.open(reportDigest)).file('report.html');
console.log(`\nreport: ${reportPath}`);

// The same per-query path again on a sample, timed by wall clock and by this process's CPU time
// (onnxruntime's threads included): the CPU figure is what the query costs, whatever the neighbours do.
const probe = await perQueryCost(base, chunks, evalQuestions, Number(values['probe-queries']));
console.log(
  `per-query cost on ${probe.n} queries (embed + exact search over ${m.meta.corpus.chunks} chunks): ` +
    `wall p50 ${probe.wall.p50.toFixed(2)} ms, CPU mean ${probe.cpuMean.toFixed(2)} ms/query (${(1000 / probe.cpuMean).toFixed(0)} queries per CPU-second); ` +
    `batched (64 a call): ${probe.batchedPerSecond.toFixed(0)} queries/s wall, ${probe.batchedCpuMs.toFixed(2)} CPU-ms/query`,
);

const ran = machine.finish();
await mkdir(join(projectRoot, 'bench', 'results'), { recursive: true });
await writeFile(
  join(projectRoot, 'bench', 'results', 'evaluation.json'),
  JSON.stringify({ machine: ran, data: values.data, chunking: { maxTokens: Number(values['max-tokens']), overlap: Number(values.overlap) }, timings, probe, metrics: m, report: reportPath }, null, 2),
);

async function perQueryCost(model: string, chunksDigest: string, questionsDigest: string, n: number) {
  const enc = await Encoder.load((await store.open(model)).dir);
  try {
    const corpusTable = await readParquet((await store.open(chunksDigest)).file(CHUNKS_FILE), ['text']);
    const texts = corpusTable.getChild('text')!.toArray() as string[];
    const memo = await openEmbeddingMemo(store, model, 'fp32');
    const { embeddings } = await embedWithMemo(enc, memo, texts, { kind: 'passage' }).finally(() => memo.close());
    const index = new ExactIndex(embeddings.data, embeddings.dim);
    const qs = (await readEvalQuestions(await store.open(questionsDigest))).map((q) => q.text);
    const sample = Array.from(seededSample(qs.length, n, 7), (i) => qs[i]!);
    for (const q of sample.slice(0, 5)) index.search((await enc.encode([q], { kind: 'query' })).data, 100);
    const wall: number[] = [];
    const cpu0 = process.cpuUsage();
    for (const q of sample) {
      const t = performance.now();
      index.search((await enc.encode([q], { kind: 'query' })).data, 100);
      wall.push(performance.now() - t);
    }
    const c = process.cpuUsage(cpu0);
    const cpuMean = (c.user + c.system) / 1000 / sample.length;
    const t = performance.now();
    const cpu1 = process.cpuUsage();
    const batch = await enc.encode(sample, { kind: 'query', batchSize: 64 });
    for (let i = 0; i < batch.count; i++) index.search(batch.data.subarray(i * batch.dim, (i + 1) * batch.dim), 100);
    const b = process.cpuUsage(cpu1);
    return {
      n: sample.length,
      wall: summarizeLatency(wall),
      cpuMean,
      batchedPerSecond: sample.length / ((performance.now() - t) / 1000),
      batchedCpuMs: (b.user + b.system) / 1000 / sample.length,
    };
  } finally {
    await enc.release();
  }
}
