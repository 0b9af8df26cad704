import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalStore } from '../../artifacts/store.ts';
import { evaluate } from '../../activities/evaluate.ts';
import { MetricsJson } from '../../activities/evaluation/metricsJson.ts';
import { loadCrossEncoder } from '../../activities/rerank/crossEncoder.ts';
import { trainReranker } from '../../activities/trainReranker.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { EXAMPLES, baseModel, ingestDir, sentenceDataset, sentenceQueries, windowChunks } from './fixtures.ts';

let store: LocalStore;
let model: string;
let chunks: string;
let reranker: string;
const progress: number[] = [];

beforeAll(async () => {
  store = await tempStore('ef-eval-rerank-');
  model = await baseModel(store);
  const documents = await ingestDir(store, join(EXAMPLES, 'corpus'));
  chunks = await windowChunks(store, documents, 160, 80);
  const dataset = await sentenceDataset(store, chunks, 2);
  // Tiny on purpose: the test checks the plumbing and the export, not the reranker's quality.
  reranker = (
    await runStage(trainReranker, {
      store,
      params: { maxSteps: 4, batchQueries: 4, negatives: 2, maxLength: 96 },
      inputs: { model, dataset },
      onProgress: (p) => progress.push(p.done),
    })
  ).digest;
});

describe('trainReranker', () => {
  it('trains a cross-encoder from the base model and exports an ONNX graph the TypeScript scorer runs like PyTorch', async () => {
    const art = await store.open(reranker);
    expect(art.manifest.kind).toBe('reranker');
    const files = art.manifest.files.map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining(['onnx/model.onnx', 'reranker.json', 'training_log.jsonl', 'st/tokenizer.json']));
    const log = (await readFile(art.file('training_log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(log.map((l) => l.step)).toEqual([1, 2, 3, 4]);
    expect(progress).toEqual([1, 2, 3, 4]);

    // The same pairs through PyTorch (sentence-transformers) and through onnxruntime-node, including
    // a passage longer than maxLength (truncation must keep the final separator, as Python does).
    const query = '青葉川の水質は何地点で測定しているか';
    const passages = ['水質は市内十四地点で毎月測定している。', 'The goby lives in the middle reaches.', '上流域の森林は'.repeat(60)];
    const py = `
import json, sys
from sentence_transformers import CrossEncoder
m = CrossEncoder(sys.argv[1], max_length=96)
enc = m.tokenizer([sys.argv[2]] * 3, json.loads(sys.argv[3]), padding=True, truncation=True, max_length=96, return_tensors="pt")
import torch
with torch.no_grad(): print(json.dumps(m.model(**enc).logits.view(-1).tolist()))`;
    const { stdout } = await promisify(execFile)(join(PROJECT_ROOT, '.venv', 'bin', 'python'), ['-c', py, join(art.dir, 'st'), query, JSON.stringify(passages)]);
    const expected = JSON.parse(stdout.trim().split('\n').pop()!) as number[];
    const ce = await loadCrossEncoder(art.dir);
    try {
      expect(ce.maxLength).toBe(96);
      const got = await ce.score(query, passages);
      got.forEach((s, i) => expect(s).toBeCloseTo(expected[i]!, 3));
    } finally {
      await ce.close();
    }
  });
});

describe('evaluate with a reranker', () => {
  it('reranks the top N of base (and fine-tuned), keeps recall@N, and times each depth', async () => {
    const evalQueries = await sentenceQueries(store, chunks, 20);
    const { digest } = await runStage(evaluate, {
      store,
      params: { bootstrapSamples: 200, rerankDepths: [10, 5], rerankMaxQueries: 12 },
      inputs: { base: model, finetuned: model, chunks, evalQueries, reranker },
    });
    const m = MetricsJson.parse(JSON.parse(await readFile((await store.open(digest)).file('metrics.json'), 'utf8')));
    const g = m.generated!;
    expect(Object.keys(g).sort()).toEqual(['base', 'base+rerank@10', 'base+rerank@5', 'finetuned', 'finetuned+rerank@10']);
    expect(m.meta.evalSets.generated).toMatchObject({ queries: 20, reranked: 12 });
    // Reranking permutes the top N only: which queries have a relevant chunk in the top N is unchanged.
    // (Compared on the same 12 queries: the paired test of base+rerank@10 vs base.)
    const cmp = m.pairedTests.generated!.find((c) => c.a === 'base' && c.b === 'base+rerank@10')!;
    expect(cmp.n).toBe(12);
    expect(cmp.metrics['recall@10'].diff.value).toBe(0);
    expect(cmp.metrics['recall@50'].diff.value).toBe(0);
    expect(m.pairedTests.generated!.map((c) => `${c.b} vs ${c.a}`)).toEqual(
      expect.arrayContaining(['finetuned vs base+rerank@10', 'finetuned+rerank@10 vs finetuned']),
    );
    const r5 = m.latency.rerank['rerank@5']!;
    const r10 = m.latency.rerank['rerank@10']!;
    expect(r5.n).toBe(12);
    expect(r10.p50).toBeGreaterThanOrEqual(r5.p50);
    expect(r10.max).toBeGreaterThanOrEqual(r5.max);
    expect(m.meta.models['reranker']?.digest).toBe(reranker);
  });
});
