import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { CancelledFailure } from '@temporalio/common';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stageCacheKey } from '../../artifacts/cacheKey.ts';
import type { LocalStore } from '../../artifacts/store.ts';
import { Encoder, row } from '../../activities/embedding/encoder.ts';
import { type ExecuteStageResult, createActivities } from '../../engine/engine.ts';
import { train } from '../../activities/train.ts';
import { codeFingerprint } from '../../dsl/fingerprint.ts';
import type { PlannedStage } from '../../dsl/plan.ts';
import type { Progress } from '../../dsl/stage.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { tempStore } from '../support/runStage.ts';
import { pairRows } from './fixtures.ts';
import { PYTHON, TINY, autoCpuPrecision, baseModelDir, cosine, datasetArtifact, isAlive, mean, modelArtifact, nativeBf16Flag, processesMentioning, torchEmbeddings } from './support.ts';
import { MODEL_INFO_FILE } from '../../activities/artifactKinds/modelArtifact.ts';

// The train stage through the engine's real activity (executeStage) in Temporal's mock activity
// context: heartbeats as `embedflow status` sees them, cancellation, and the published model artifact.

let store: LocalStore;
let model: string;
let dataset: string;

beforeAll(async () => {
  store = await tempStore('ef-train-act-');
  model = await modelArtifact(store);
  const rows = pairRows(1);
  // 24 training rows (3 steps of 8 an epoch), 8 dev rows on other topics.
  dataset = await datasetArtifact(store, rows.filter((_, i) => i % 8 < 3), rows.filter((_, i) => i % 8 === 3));
});

afterAll(async () => {
  // Nothing the tests started may outlive them.
  expect(await processesMentioning(store.root)).toEqual([]);
});

async function plannedTrain(params: Record<string, unknown>): Promise<{ stage: PlannedStage; key: string; inputs: Record<string, string> }> {
  const parsed = train.params.parse(params);
  const fingerprint = await codeFingerprint({ module: train.module, codeFiles: train.codeFiles, version: train.version });
  const inputs = { model, dataset };
  const stage: PlannedStage = {
    id: 'model',
    kind: train.kind,
    output: train.output,
    params: parsed,
    inputs: { model: 'base', dataset: 'dataset' },
    fingerprint,
    volatile: false,
    module: train.module,
    activity: { queue: 'cpu', startToCloseTimeout: '1h', heartbeatTimeout: '5m', retry: { maximumAttempts: 3, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' } },
  };
  return { stage, key: stageCacheKey({ kind: train.kind, fingerprint, params: parsed, inputs }), inputs };
}

function activities() {
  return createActivities({
    store,
    env: { home: join(store.root, 'home'), python: PYTHON, projectRoot: PROJECT_ROOT, vars: { ...process.env } },
  });
}

describe('train stage (activity)', { timeout: 600_000 }, () => {
  it('trains through the whole path: heartbeats with step/total/loss/checkpoint, loss going down, a model artifact whose ONNX matches PyTorch', async () => {
    const { stage, key, inputs } = await plannedTrain({ ...TINY, epochs: 2, learningRate: 1e-4, checkpointEvery: 3 });
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 300_000 }, { logger: new DefaultLogger('WARN') });
    const beats: Progress[] = [];
    env.on('heartbeat', (d: Progress | undefined) => d && beats.push(d));
    const out = (await env.run(activities().executeStage, { runId: 'test', stage, inputs, key })) as ExecuteStageResult;

    // Heartbeats: what `status` shows while the stage runs.
    const steps = beats.filter((b) => b.unit === 'steps' && typeof b.loss === 'number');
    expect(steps.map((b) => b.done)).toEqual(expect.arrayContaining([1, 2, 3, 4, 5, 6]));
    expect(steps.every((b) => b.total === 6)).toBe(true);
    const between = steps.filter((b) => b.done > 3 && b.done < 6);
    expect(between.length).toBeGreaterThan(0);
    expect(between.every((b) => String(b.checkpoint).endsWith('/checkpoint-3'))).toBe(true);
    expect(String(beats.at(-1)?.checkpoint)).toMatch(/\/checkpoint-6$/);

    // A base with no published training temperature trains at sentence-transformers' scale.
    expect(out.stats).toMatchObject({ steps: 6, stepsRun: 6, resumedFromStep: 0, device: 'cpu', precision: autoCpuPrecision(), checkpoints: 2, lossScale: 20 });
    // Why that precision, and the kernel's peak memory, as `status` and the bench show them.
    expect(out.stats.precisionReason).toMatch(nativeBf16Flag() ? /^bf16: CPU has (amx|avx512)_bf16$/ : /^fp32: CPU has no avx512_bf16 or amx_bf16/);
    expect(out.stats.peakRssMB).toBeGreaterThan(100);
    expect(out.stats.devNdcg10).toBeGreaterThan(0.5);
    const artifact = await store.open(out.digest);
    expect(artifact.manifest.kind).toBe('model');
    const files = artifact.manifest.files.map((f) => f.path);
    expect(files).toEqual(expect.arrayContaining([MODEL_INFO_FILE, 'onnx/model.onnx', 'onnx/model_int8.onnx', 'st/modules.json', 'st/tokenizer.json', 'st/model.safetensors', 'modules.json', 'README.md']));
    // One card, ours: sentence-transformers' st/README.md recorded the training's wall time, so the same
    // run made alone and beside three others gave two model artifacts (bench/soak.ts).
    expect(files).not.toContain('st/README.md');
    const curve = (artifact.manifest.meta.lossCurve as Array<{ step: number; loss: number }>).map((p) => p.loss);
    expect(curve).toHaveLength(6);
    expect(mean(curve.slice(3))).toBeLessThan(0.8 * mean(curve.slice(0, 3)));

    const info = JSON.parse(await readFile(artifact.file(MODEL_INFO_FILE), 'utf8'));
    // The training length (64) bounded the cost only; the model keeps the length it supports.
    expect(info).toMatchObject({ name: 'all-MiniLM-L6-v2-ft', dim: 384, maxSeqLength: 256, normalize: true });
    // Its model card says what it was trained on and how (the fixture base has no card facts: license unknown).
    const card = await readFile(artifact.file('README.md'), 'utf8');
    expect(card).toMatch(/^---\n(.|\n)*license: unknown\nlibrary_name: sentence-transformers\n(.|\n)*pipeline_tag: sentence-similarity\n---\n/);
    expect(card).toContain(`- Base model: \`all-MiniLM-L6-v2\` (artifact \`${model}\`)`);
    expect(card).toContain(`- Dataset: artifact \`${dataset}\`, 24 (query, passage[, negatives]) rows`);
    expect(card).toMatch(/- Loss: mnrl at scale 20; 6 steps \(2 epoch\(s\)\), batch size 8, learning rate 0\.0001/);
    expect(card).toMatch(/- Dev split after training: .*dev_cosine_ndcg@10 0\.\d{4}/);
    expect(card).toContain('SentenceTransformer("./my-model")');
    // Checkpoints are gone once the artifact exists.
    expect(await readdir(join(store.root, 'work')).catch(() => [])).not.toContain(key);

    // The exported ONNX (through the project's encoder, onnxruntime-node) = the trained PyTorch model.
    const texts = ['富士山の高さは?', 'The Nile flows north to the Mediterranean Sea.', 'a', '梅雨はいつ始まる?'.repeat(40)];
    const enc = await Encoder.load(artifact.dir, { threads: 1 });
    const onnx = await enc.encode(texts, { kind: 'passage' });
    await enc.release();
    const [trained, base] = await Promise.all([torchEmbeddings(join(artifact.dir, 'st'), texts), torchEmbeddings(await baseModelDir(), texts)]);
    for (let i = 0; i < texts.length; i++) expect(cosine(row(onnx, i), trained[i]!)).toBeGreaterThanOrEqual(0.999);
    // ...and it is a different model from the one it started from.
    expect(Math.min(...texts.map((_, i) => cosine(trained[i]!, base[i]!)))).toBeLessThan(0.9999);
  });

  it('cancellation kills the whole kernel process group: no kernel process survives', async () => {
    const { stage, key, inputs } = await plannedTrain({ ...TINY, maxSteps: 500, checkpointEvery: 1000 });
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 300_000 }, { logger: new DefaultLogger('WARN') });
    let running: number[] = [];
    const firstStep = new Promise<void>((resolve) => {
      env.on('heartbeat', (d: Progress | undefined) => {
        if (d?.unit === 'steps' && d.done >= 1 && typeof d.loss === 'number') resolve();
      });
    });
    const artifactsBefore = await store.listArtifacts();
    const result = env.run(activities().executeStage, { runId: 'test', stage, inputs, key }).catch((e: unknown) => e);
    await firstStep;
    const workDir = join(store.root, 'work', key);
    running = await processesMentioning(workDir);
    expect(running.length).toBeGreaterThan(0);

    env.cancel();
    const err = await result;
    expect(err).toBeInstanceOf(CancelledFailure);
    expect(await processesMentioning(workDir)).toEqual([]);
    for (const pid of running) expect(isAlive(pid)).toBe(false);
    expect(await store.listArtifacts()).toEqual(artifactsBefore);
  });
});
