import { execFile } from 'node:child_process';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { OutOfMemoryError, TrainerConfigError, TrainerFailedError } from '../../core/errors.ts';
import { latestCheckpoint } from '../../activities/training/checkpoints.ts';
import { pairRows, syntheticRows, writePairsParquet } from './fixtures.ts';
import { rowCosines, torchEmbeddings } from '../embedding/support.ts';
import { PYTHON, type TinyRunOptions, autoCpuPrecision, baseModelDir, mean, memoryCappedPython, tempDir, tinyKernelRun } from './support.ts';
import { DEV_FILE, TRAIN_FILE } from '../../activities/artifactKinds/datasetArtifact.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';

// The training kernel (trainer/train.py) driven exactly as the train stage drives it (same flags,
// same runner), without Temporal: learning, determinism, exact resume, and its failure modes.

let model: string;
let dir: string;
let train: string;

beforeAll(async () => {
  model = await baseModelDir();
  dir = await tempDir('ef-kernel-');
  train = join(dir, TRAIN_FILE);
  // 24 rows, batch 8: 3 steps an epoch.
  await writePairsParquet(train, pairRows(1).filter((_, i) => i % 8 < 3));
});

const run = promisify(execFile);

/** Names of the weight tensors that differ between two sentence-transformers directories. */
async function changedTensors(a: string, b: string): Promise<string[]> {
  const script = [
    'import sys, json, numpy as np',
    'from safetensors.numpy import load_file',
    'strip = lambda w: {k.removeprefix("bert.").removeprefix("model."): v for k, v in w.items() if "position_ids" not in k}',
    'x, y = (strip(load_file(d + "/model.safetensors")) for d in sys.argv[1:3])',
    'assert x.keys() == y.keys(), (sorted(x.keys() ^ y.keys()))',
    'print(json.dumps(sorted(k for k in x if not np.array_equal(x[k], y[k]))))',
  ].join('\n');
  const { stdout } = await run(PYTHON, ['-c', script, a, b]);
  return JSON.parse(stdout) as string[];
}

const kernel = (outputDir: string, params: Record<string, unknown>, more: Partial<TinyRunOptions> = {}) =>
  tinyKernelRun(outputDir, params, { model, train, ...more });

describe('training kernel', { timeout: 600_000 }, () => {
  it('learns on CPU (loss goes down); the same seed gives the same loss curve twice; a resume from a checkpoint continues that curve exactly', async () => {
    const params = { epochs: 2, learningRate: 1e-4, checkpointEvery: 3 };
    // Two identical runs side by side: one thread each on a two-core machine.
    const [a, b] = await Promise.all([kernel(join(dir, 'a'), params), kernel(join(dir, 'b'), params)]);
    expect(a.curve.map(([s]) => s)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(b.curve).toEqual(a.curve);
    const losses = a.curve.map(([, l]) => l);
    // Epoch 2 sees the same rows as epoch 1 (reshuffled): the model has learnt them.
    expect(mean(losses.slice(3))).toBeLessThan(0.8 * mean(losses.slice(0, 3)));
    expect(a.done).toMatchObject({ step: 6, total: 6, stepsExecuted: 6, device: 'cpu', precision: autoCpuPrecision() });
    expect(a.done.lastCheckpoint).toBe(join(dir, 'a', 'checkpoint-6'));
    expect(a.lines.filter((l) => l.type === 'checkpoint').map((l) => (l as { step: number }).step)).toEqual([3, 6]);

    // A run that got as far as checkpoint-3 (only that checkpoint on disk) resumes with optimizer,
    // scheduler and RNG state restored: steps 4-6 give exactly the uninterrupted run's losses.
    const resumed = join(dir, 'resumed');
    await mkdir(resumed, { recursive: true });
    await cp(join(dir, 'a', 'checkpoint-3'), join(resumed, 'checkpoint-3'), { recursive: true });
    const from = await latestCheckpoint(resumed);
    expect(from?.step).toBe(3);
    const rest = await kernel(resumed, params, { resumeFrom: from!.path });
    expect(rest.done.stepsExecuted).toBe(3);
    expect(rest.curve).toEqual(a.curve.slice(3));
  });

  it('merging with the base: share 0 gives the base back; auto keeps a share of 0.5 or 1 only for a dev gain beyond noise, and says why', async () => {
    const dev = join(dir, DEV_FILE);
    // Four dev rows: a dev corpus of fewer than 10 passages, as a small corpus's split has (nDCG@10 over
    // fewer than 10 ranked passages once crashed the merge, and with it `npm start`).
    await writePairsParquet(dev, pairRows(1).filter((_, i) => i % 16 === 6));
    // A learning rate that moves the weights a long way in two steps, so the merge has something to undo.
    const params = { maxSteps: 2, learningRate: 1e-3 };
    const [none, auto] = await Promise.all([
      kernel(join(dir, 'share0'), { ...params, mergeWithBase: 0 }),
      kernel(join(dir, 'auto'), { ...params, mergeWithBase: 'auto', evaluate: true }, { dev }),
    ]);
    const texts = ['水質は何地点で測定しているか', 'The survey started in 2016.'];
    const work = await tempDir('ef-merge-');
    const base = await torchEmbeddings(model, texts, work);
    expect(Math.min(...rowCosines(await torchEmbeddings(join(dir, 'share0', 'final'), texts, work), base))).toBeGreaterThan(0.99999);
    expect(none.done.merge).toMatchObject({ share: 0, chosenBy: 'parameter' });

    const merge = auto.done.merge!;
    expect(merge.candidates.map((c) => c.share)).toEqual([0, 0.5, 1]);
    // A share of the fine-tune is kept only when its dev gain over the base is beyond noise (the lower
    // end of its paired interval above zero); otherwise the base comes back, and the kernel says why.
    const [base0, ...tuned] = merge.candidates;
    expect(base0).toMatchObject({ share: 0, gain: 0 });
    const best = tuned.reduce((a, b) => ((b['dev_cosine_ndcg@10'] ?? -1) > (a['dev_cosine_ndcg@10'] ?? -1) ? b : a));
    for (const c of tuned) expect(c.gainLow!).toBeLessThanOrEqual(c.gain!);
    if (best.gainLow! > 0) expect(merge).toMatchObject({ share: best.share, chosenBy: 'dev gain beyond noise' });
    else expect(merge).toMatchObject({ share: 0, chosenBy: expect.stringContaining('the base is kept') });
    expect(auto.lines.some((l) => l.type === 'status' && /share \S+ kept/.test(l.message))).toBe(true);
    // The base was measured before the first step, and the final figures are the kept candidate's.
    const evals = auto.lines.filter((l) => l.type === 'eval');
    expect(evals[0]).toMatchObject({ step: 0 });
    const kept = merge.candidates.find((c) => c.share === merge.share)!;
    expect(auto.done.evalMetrics['dev_cosine_ndcg@10']).toBeCloseTo(kept['dev_cosine_ndcg@10']!, 3);
  });

  it('CachedMNRL (GradCache) and GISTEmbed (guided by the base model) train too', async () => {
    const [cached, gist] = await Promise.all([
      kernel(join(dir, 'cached'), { loss: 'cached-mnrl', miniBatchSize: 4, maxSteps: 2 }),
      kernel(join(dir, 'gist'), { loss: 'gist', maxSteps: 2 }),
    ]);
    for (const r of [cached, gist]) {
      expect(r.done.stepsExecuted).toBe(2);
      expect(r.curve.every(([, loss]) => Number.isFinite(loss) && loss > 0)).toBe(true);
    }
  });

  it('trainLayers: only the top layers learn; the loss is computed at the scale asked for', async () => {
    const params = { maxSteps: 1, learningRate: 1e-3 };
    const [top, at20, at100] = await Promise.all([
      kernel(join(dir, 'top1'), { ...params, trainLayers: 1 }),
      kernel(join(dir, 'scale20'), { ...params, scale: 20 }),
      kernel(join(dir, 'scale100'), { ...params, scale: 100 }),
    ]);
    // MiniLM has 6 layers: with the top one trained, every weight below it is the base's.
    const changed = await changedTensors(model, join(dir, 'top1', 'final'));
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.every((name) => name.includes('encoder.layer.5.'))).toBe(true);
    expect(await changedTensors(model, join(dir, 'scale20', 'final'))).toEqual(expect.arrayContaining(['encoder.layer.0.attention.self.query.weight']));
    // The same seed, so the same first batch before any update: only the scale differs.
    expect(top.done.stepsExecuted).toBe(1);
    const loss20 = at20.curve[0]![1];
    const loss100 = at100.curve[0]![1];
    expect(loss100).not.toBeCloseTo(loss20, 3);
  });

  it('trainLayers: in training the frozen layers run as at inference (no dropout), the trained ones as in training', async () => {
    // Two forward passes in train mode over the same text: the frozen layers' output must not change,
    // or the top layers would learn from noised states they never see once exported.
    const script = [
      'import sys, json, torch',
      'sys.path.insert(0, sys.argv[2])',
      'from sentence_transformers import SentenceTransformer',
      'from train import freeze_below_top',
      'm = SentenceTransformer(sys.argv[1], device="cpu")',
      'am = m[0].auto_model',
      'freeze_below_top(am, 1)',
      'm.eval(); m.train()',
      'x = m.tokenize(["東大寺の大仏は聖武天皇の発願で造立された。"] * 2)',
      'h = [am(**x, output_hidden_states=True).hidden_states for _ in range(2)]',
      'print(json.dumps({"frozen": all(torch.equal(a, b) for a, b in zip(h[0][:-1], h[1][:-1])), "top": torch.equal(h[0][-1], h[1][-1])}))',
    ].join('\n');
    const { stdout } = await run(PYTHON, ['-c', script, model, join(PROJECT_ROOT, 'trainer')]);
    expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({ frozen: true, top: false });
  });

  it('trainLayers: the frozen layers run once per text, and the layers above get what they would have computed', async () => {
    // Texts of different lengths, batched two ways (so padded differently), then again: all from the cache.
    // Then padded with a token that is not the pad token (as the loss pads columns embedded together):
    // the attention mask, not the pad id, says where a text ends.
    const script = [
      'import sys, json, numpy as np',
      'sys.path.insert(0, sys.argv[2])',
      'from sentence_transformers import SentenceTransformer',
      'from train import freeze_below_top',
      'from frozen_cache import cache_frozen_states',
      'm = SentenceTransformer(sys.argv[1], device="cpu")',
      'freeze_below_top(m[0].auto_model, 1)',
      'texts = ["東大寺", "東大寺の大仏は聖武天皇の発願で造立された。", "The Great Buddha of Nara", "奈良時代の仏教は国家の保護を受け、各地に国分寺が建てられた。" * 3]',
      'ref = m.encode(texts, batch_size=4)',
      'cache = cache_frozen_states(m[0].auto_model, 1, 64)',
      'a = m.encode(texts, batch_size=3)',
      'b = m.encode(texts[::-1], batch_size=2)[::-1]',
      'x = m.tokenize(texts[:2])',
      'x["input_ids"][x["attention_mask"] == 0] = 7',
      'c = m(x)["sentence_embedding"].detach().numpy()',
      'print(json.dumps({"first": float(np.abs(a - ref).max()), "again": float(np.abs(b - ref).max()), "padded": float(np.abs(c - ref[:2]).max()), **cache.stats()}))',
    ].join('\n');
    const { stdout } = await run(PYTHON, ['-c', script, model, join(PROJECT_ROOT, 'trainer')]);
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, number>;
    expect(r.first).toBeLessThan(1e-5);
    expect(r.again).toBeLessThan(1e-5);
    expect(r.padded).toBeLessThan(1e-5);
    expect(r).toMatchObject({ misses: 4, hits: 6, texts: 4 });

    // In training: the same loss curve as computing the frozen layers every step, the second epoch from the cache.
    // In fp32: in bf16 (what 'auto' picks on an AMX CPU) a text's states depend on the batch they were computed
    // in (its shape, its padding) by more than this tolerance (5.6e-5 in the loss), and epoch 2 batches differently.
    const params = { epochs: 2, learningRate: 1e-3, trainLayers: 1, precision: 'fp32' as const };
    const [cached, uncached] = await Promise.all([
      kernel(join(dir, 'frozen-cached'), params),
      kernel(join(dir, 'frozen-uncached'), { ...params, frozenCacheMB: 0 }),
    ]);
    expect(cached.curve.map(([s]) => s)).toEqual([1, 2, 3, 4, 5, 6]);
    cached.curve.forEach(([, loss], i) => expect(loss).toBeCloseTo(uncached.curve[i]![1], 4));
    expect(uncached.done.frozenCache).toBeNull();
    expect(cached.done.frozenCache!.misses).toBeGreaterThan(0);
    expect(cached.done.frozenCache!.hits).toBeGreaterThanOrEqual(cached.done.frozenCache!.misses);
  });

  it('a bad parameter fails at once with a TrainerConfigError naming it', async () => {
    const started = Date.now();
    const err = await kernel(join(dir, 'bad'), { numNegatives: 3 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrainerConfigError);
    expect((err as Error).message).toMatch(/--num-negatives 3 but .* has only 1 negative_\* columns/);
    expect((err as TrainerConfigError).hint).toMatch(/use at most 1/);
    // Checked before torch is imported.
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('an absurd batch on a machine without the memory is an OutOfMemoryError with a batch size to try', async () => {
    const big = join(dir, 'big.parquet');
    await writePairsParquet(big, syntheticRows(1024));
    // 4 GB of address space: enough to load torch and train small batches (peak ~2.7 GB), not for a batch
    // of 1024 texts of 128 tokens (one layer's activations alone are over 1 GB) embedded all at once
    // (miniBatchSize = batchSize: no GradCache, which would make it fit).
    const python = await memoryCappedPython(dir, 4000);
    const err = await kernel(join(dir, 'oom'), { batchSize: 1024, miniBatchSize: 1024, maxSeqLength: 128, maxSteps: 1 }, { python, train: big }).catch((e: unknown) => e);
    expect(err, String(err)).toBeInstanceOf(OutOfMemoryError);
    expect((err as Error).message).toMatch(/out of (CPU )?memory at batch size 1024.*try batchSize 512/);
  });

  it('a kernel crash is a TrainerFailedError carrying the last lines of its stderr', async () => {
    const broken = join(dir, 'broken-model');
    await cp(model, broken, { recursive: true });
    await writeFile(join(broken, 'model.safetensors'), 'not a safetensors file');
    const err = await kernel(join(dir, 'crash'), { maxSteps: 1 }, { model: broken }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrainerFailedError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/its last stderr lines:/);
    expect(msg).toMatch(/Traceback|Error/);
    expect(msg).toMatch(/safetensors|header|deserializ/i);
  });
});
