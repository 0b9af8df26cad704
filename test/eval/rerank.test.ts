import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalStore } from '../../artifacts/store.ts';
import { ModelNotFoundError } from '../../core/errors.ts';
import { evaluate } from '../../activities/evaluate.ts';
import { prepareReranker } from '../../activities/prepareReranker.ts';
import { loadCrossEncoder } from '../../activities/rerank/crossEncoder.ts';
import { trainReranker } from '../../activities/trainReranker.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { EXAMPLES, baseModel, ingestDir, sentenceDataset, sentenceQueries, windowChunks } from './fixtures.ts';
import { readMetrics } from '../../activities/artifactKinds/evaluationArtifact.ts';

// Pairs scored the same way everywhere below, including a passage longer than the 96-token maxLength.
const query = '青葉川の水質は何地点で測定しているか';
const passages = ['水質は市内十四地点で毎月測定している。', 'The goby lives in the middle reaches.', '上流域の森林は'.repeat(60)];

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
    const m = await readMetrics(await store.open(digest));
    const g = m.generated!;
    expect(Object.keys(g).sort()).toEqual(['base', 'base+bm25', 'base+rerank@10', 'base+rerank@5', 'bm25', 'finetuned', 'finetuned+bm25', 'finetuned+rerank@10']);
    expect(m.meta.evalSets.generated).toMatchObject({ queries: 20, reranked: 12 });
    // Reranking permutes the top N only: which queries have a relevant chunk in the top N is unchanged.
    // (Compared on the same 12 queries: the paired test of base+rerank@10 vs base.)
    const cmp = m.pairedTests.generated!.find((c) => c.a === 'base' && c.b === 'base+rerank@10')!;
    expect(cmp.n).toBe(12);
    expect(cmp.metrics['accuracy@10'].diff.value).toBe(0);
    expect(cmp.metrics['accuracy@50'].diff.value).toBe(0);
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


/** A folder holding the given files of an artifact, each at the path given. */
async function folderFrom(artifactDir: string, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ef-user-reranker-'));
  for (const [to, from] of Object.entries(files)) {
    await mkdir(join(dir, to, '..'), { recursive: true });
    await copyFile(join(artifactDir, from), join(dir, to));
  }
  return dir;
}

async function scores(dir: string): Promise<number[]> {
  const ce = await loadCrossEncoder(dir);
  try {
    return [...(await ce.score(query, passages))];
  } finally {
    await ce.close();
  }
}

async function refusal(modelDir: string, params: Record<string, unknown> = {}): Promise<ModelNotFoundError> {
  const err = await runStage(prepareReranker, { store, params: { model: modelDir, ...params } }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelNotFoundError);
  return err as ModelNotFoundError;
}

describe('prepareReranker', () => {
  // The user's cross-encoder directory is a real one: the reranker trained above, its ONNX graph and
  // tokenizer copied out into a Hugging Face-style folder (tokenizer at the top, onnx/model.onnx), as
  // an ONNX export of bge-reranker-v2-m3 is laid out.
  let trained: string;
  let userDir: string;
  beforeAll(async () => {
    trained = reranker;
    userDir = await folderFrom((await store.open(trained)).dir, {
      'onnx/model.onnx': 'onnx/model.onnx',
      'tokenizer.json': 'st/tokenizer.json',
      'tokenizer_config.json': 'st/tokenizer_config.json',
      'config.json': 'st/config.json',
    });
  });

  it("turns the user's cross-encoder folder into a reranker artifact that scores pairs exactly as the trained one", async () => {
    const { digest, stats } = await runStage(prepareReranker, { store, params: { model: userDir, maxLength: 96, name: 'my-reranker' } });
    const art = await store.open(digest);
    expect(art.manifest.kind).toBe('reranker');
    expect(art.manifest.files.map((f) => f.path)).toEqual(
      expect.arrayContaining(['onnx/model.onnx', 'reranker.json', 'st/tokenizer.json', 'st/tokenizer_config.json']),
    );
    const info = JSON.parse(await readFile(art.file('reranker.json'), 'utf8'));
    expect(info).toMatchObject({ name: 'my-reranker', source: 'prepareReranker', base: userDir, maxSeqLength: 96, outputName: 'logits' });
    expect(art.manifest.meta.reranker).toEqual(info);
    expect(stats).toMatchObject({ maxLength: 96, reused: false });

    // The long passage is cut at 96 tokens in both: the same truncation as the trained reranker's.
    const want = await scores((await store.open(trained)).dir);
    expect(await scores(art.dir)).toEqual(want);
    expect(new Set(want).size).toBe(3);
  });

  it('the evaluate stage reranks with it unchanged', async () => {
    const prepared = (await runStage(prepareReranker, { store, params: { model: userDir, maxLength: 96, name: 'my-reranker' } })).digest;
    const evalQueries = await sentenceQueries(store, chunks, 8);
    const { digest } = await runStage(evaluate, {
      store,
      params: { bootstrapSamples: 100, rerankDepths: [5], rerankMaxQueries: 4, rerankFinetuned: false },
      inputs: { base: model, chunks, evalQueries, reranker: prepared },
    });
    const m = await readMetrics(await store.open(digest));
    expect(Object.keys(m.generated!).sort()).toEqual(['base', 'base+bm25', 'base+rerank@5', 'bm25']);
    expect(m.meta.models['reranker']).toMatchObject({ name: 'my-reranker', digest: prepared });
    expect(m.latency.rerank['rerank@5']?.n).toBe(4);
  });

  it('reuses its artifact while the folder is unchanged and notices when it changes', async () => {
    const params = { model: userDir, maxLength: 96 };
    const first = await runStage(prepareReranker, { store, params });
    const again = await runStage(prepareReranker, { store, params });
    expect(again.digest).toBe(first.digest);
    expect(again.stats.reused).toBe(true);

    const config = join(userDir, 'tokenizer_config.json');
    const parsed = JSON.parse(await readFile(config, 'utf8'));
    await writeFile(config, JSON.stringify({ ...parsed, model_max_length: 128 }));
    const changed = await runStage(prepareReranker, { store, params });
    expect(changed.stats.reused).toBe(false);
    expect(changed.digest).not.toBe(first.digest);
    const cfg = JSON.parse(await readFile((await store.open(changed.digest)).file('st/tokenizer_config.json'), 'utf8'));
    expect(cfg.model_max_length).toBe(128);
  });

  it('refuses a folder without an ONNX graph or without tokenizer.json, naming the folder and the fix', async () => {
    const trainedDir = (await store.open(trained)).dir;
    const noOnnx = await folderFrom(trainedDir, { 'tokenizer.json': 'st/tokenizer.json', 'tokenizer_config.json': 'st/tokenizer_config.json' });
    const e1 = await refusal(noOnnx);
    expect(e1.message).toContain(noOnnx);
    expect(e1.message).toContain('no ONNX graph');
    expect(e1.hint).toContain('optimum-cli export onnx');

    // Only a differently named graph: the hint names it and the parameter that picks it.
    const otherName = await folderFrom(trainedDir, { 'onnx/model_quantized.onnx': 'onnx/model.onnx', 'tokenizer.json': 'st/tokenizer.json', 'tokenizer_config.json': 'st/tokenizer_config.json' });
    expect((await refusal(otherName)).hint).toContain('onnx/model_quantized.onnx');
    const picked = await runStage(prepareReranker, { store, params: { model: otherName, onnx: 'onnx/model_quantized.onnx' } });
    expect(picked.manifest.kind).toBe('reranker');

    const noTokenizer = await folderFrom(trainedDir, { 'onnx/model.onnx': 'onnx/model.onnx' });
    const e2 = await refusal(noTokenizer);
    expect(e2.message).toContain(noTokenizer);
    expect(e2.message).toContain('no tokenizer.json');
    expect(e2.hint).toContain('save_pretrained');

    const missing = join(noTokenizer, 'absent');
    expect((await refusal(missing)).message).toContain(missing);
  });

  it('refuses an embedding model, whose graph would load but not give one score per pair', async () => {
    const embedder = await folderFrom((await store.open(model)).dir, {
      'onnx/model.onnx': 'onnx/model.onnx',
      'tokenizer.json': 'st/tokenizer.json',
      'tokenizer_config.json': 'st/tokenizer_config.json',
    });
    const err = await refusal(embedder);
    expect(err.message).toContain('not one relevance score per pair');
    expect(err.where).toContain(embedder);
  });
});
