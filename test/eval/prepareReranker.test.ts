import { copyFile, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalStore } from '../../artifacts/store.ts';
import { ModelNotFoundError } from '../../activities/errors.ts';
import { evaluate } from '../../activities/evaluate.ts';
import { MetricsJson } from '../../activities/evaluation/metricsJson.ts';
import { prepareReranker } from '../../activities/prepareReranker.ts';
import { loadCrossEncoder } from '../../activities/rerank/crossEncoder.ts';
import { trainReranker } from '../../activities/trainReranker.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { EXAMPLES, baseModel, ingestDir, sentenceDataset, sentenceQueries, windowChunks } from './fixtures.ts';

// The user's cross-encoder directory is a real one: a tiny reranker trained by trainReranker, its ONNX
// graph and tokenizer copied out into a Hugging Face-style folder (tokenizer at the top, onnx/model.onnx),
// as an ONNX export of bge-reranker-v2-m3 is laid out.

let store: LocalStore;
let model: string;
let chunks: string;
let trained: string;
let userDir: string;

const query = '青葉川の水質は何地点で測定しているか';
const passages = ['水質は市内十四地点で毎月測定している。', 'The goby lives in the middle reaches.', '上流域の森林は'.repeat(60)];

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

beforeAll(async () => {
  store = await tempStore('ef-eval-prepare-reranker-');
  model = await baseModel(store);
  const documents = await ingestDir(store, join(EXAMPLES, 'corpus'));
  chunks = await windowChunks(store, documents, 160, 80);
  const dataset = await sentenceDataset(store, chunks, 2);
  trained = (await runStage(trainReranker, { store, params: { maxSteps: 2, batchQueries: 4, negatives: 2, maxLength: 96 }, inputs: { model, dataset } }))
    .digest;
  userDir = await folderFrom((await store.open(trained)).dir, {
    'onnx/model.onnx': 'onnx/model.onnx',
    'tokenizer.json': 'st/tokenizer.json',
    'tokenizer_config.json': 'st/tokenizer_config.json',
    'config.json': 'st/config.json',
  });
});

describe('prepareReranker', () => {
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
    const reranker = (await runStage(prepareReranker, { store, params: { model: userDir, maxLength: 96, name: 'my-reranker' } })).digest;
    const evalQueries = await sentenceQueries(store, chunks, 8);
    const { digest } = await runStage(evaluate, {
      store,
      params: { bootstrapSamples: 100, rerankDepths: [5], rerankMaxQueries: 4, rerankFinetuned: false },
      inputs: { base: model, chunks, evalQueries, reranker },
    });
    const m = MetricsJson.parse(JSON.parse(await readFile((await store.open(digest)).file('metrics.json'), 'utf8')));
    expect(Object.keys(m.generated!).sort()).toEqual(['base', 'base+rerank@5']);
    expect(m.meta.models['reranker']).toMatchObject({ name: 'my-reranker', digest: reranker });
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
