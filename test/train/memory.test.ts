import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { pairRows, syntheticRows, writePairsParquet } from './fixtures.ts';
import { PYTHON, baseModelDir, tempDir, tinyKernelRun } from './support.ts';

// Training that fits a CPU's memory: MNRL whose graph would be large runs as GradCache (the same
// loss, one mini-batch's graph at a time), and the kernel reports its peak RSS.

type Plan = { miniBatch: number; reason: string } | null;

/** trainer/memory.py's grad_cache_plan, as the kernel calls it once the model and data are loaded. */
async function plan(loss: string, batch: number, mini: number | null, textsPerRow: number, seq: number, device: string, trainedShare = 1): Promise<Plan> {
  const code = [
    'import json, sys',
    `sys.path.insert(0, ${JSON.stringify(join(PROJECT_ROOT, 'trainer'))})`,
    'from memory import grad_cache_plan',
    'p = grad_cache_plan(*json.loads(sys.argv[1]))',
    'print(json.dumps(p and {"miniBatch": p.mini_batch, "reason": p.reason}))',
  ].join('\n');
  const { stdout } = await promisify(execFile)(PYTHON, ['-c', code, JSON.stringify([loss, batch, mini, textsPerRow, seq, device, trainedShare])]);
  return JSON.parse(stdout) as Plan;
}

describe('GradCache plan', () => {
  it('a CPU step of 32 rows × 3 texts × 256 tokens through every layer runs in mini-batches; through the top 2 (the recipe), small steps, GPUs and other losses do not', async () => {
    expect(await plan('mnrl', 32, null, 3, 256, 'cpu')).toEqual({ miniBatch: 16, reason: expect.stringMatching(/32 rows × 3 texts × 256 tokens > 4096 tokens/) });
    // bench/training.ts's CPU shapes, and the tests' tiny runs: plain MNRL.
    expect(await plan('mnrl', 16, null, 2, 128, 'cpu')).toBeNull();
    expect(await plan('mnrl', 8, null, 2, 64, 'cpu')).toBeNull();
    expect(await plan('mnrl', 128, null, 2, 256, 'cuda')).toBeNull();
    expect(await plan('gist', 32, null, 3, 256, 'cpu')).toBeNull();
    // The user's miniBatchSize wins: below the batch it is GradCache (any device), at or above it plain MNRL.
    expect((await plan('mnrl', 128, 32, 2, 256, 'cuda'))?.miniBatch).toBe(32);
    expect(await plan('mnrl', 32, 32, 3, 256, 'cpu')).toBeNull();
    expect((await plan('cached-mnrl', 32, null, 3, 256, 'cuda'))?.miniBatch).toBe(32);
    // The recipe's e5 step trains its top 2 of 12 layers: only they keep a graph, so no GradCache (whose
    // second forward pass would double the step); at twice the length it is back, a column at a time.
    expect(await plan('mnrl', 32, null, 3, 256, 'cpu', 2 / 12)).toBeNull();
    expect((await plan('mnrl', 32, null, 3, 512, 'cpu', 2 / 12))?.miniBatch).toBe(32);
  });
});

describe('training memory', { timeout: 600_000 }, () => {
  let model: string;
  let dir: string;
  beforeAll(async () => {
    model = await baseModelDir();
    dir = await tempDir('ef-memory-');
  });

  it('GradCache bounds the peak RSS the kernel reports: a step of 32 rows (passages of 128 tokens), whole vs in mini-batches of 4', async () => {
    const train = join(dir, 'long.parquet');
    await writePairsParquet(train, syntheticRows(64));
    const params = { batchSize: 32, maxSeqLength: 128, maxSteps: 1, checkpointEvery: 100 };
    const [whole, cached] = await Promise.all([
      tinyKernelRun(join(dir, 'whole'), { ...params, miniBatchSize: 32 }, { model, train }),
      tinyKernelRun(join(dir, 'cached'), { ...params, miniBatchSize: 4 }, { model, train }),
    ]);
    expect(whole.done.gradCacheMiniBatch).toBeNull();
    expect(cached.done.gradCacheMiniBatch).toBe(4);
    // ~4,700 tokens' graph at once against 4 texts' at a time: 1,504 vs 928 MB when this was written.
    const [w, c] = [whole.done.peakRssMB!, cached.done.peakRssMB!];
    expect(w - c, `peak RSS ${w} MB whole, ${c} MB in mini-batches`).toBeGreaterThan(400);
  });

  it('MNRL turns to GradCache by itself on a CPU for a large step, and it is the same loss', async () => {
    const train = join(dir, 'pairs.parquet');
    await writePairsParquet(train, pairRows(0, 16));
    // 8 rows × 2 texts × 512 tokens > 4,096 tokens: GradCache, one column of 8 texts at a time. The
    // fixture's texts are short and batches are padded to their longest, so this costs no more than usual.
    const [auto, plain] = await Promise.all([
      tinyKernelRun(join(dir, 'auto'), { batchSize: 8, maxSeqLength: 512, maxSteps: 2 }, { model, train }),
      tinyKernelRun(join(dir, 'plain'), { batchSize: 8, maxSeqLength: 512, maxSteps: 2, miniBatchSize: 8 }, { model, train }),
    ]);
    expect(auto.done.gradCacheMiniBatch).toBe(8);
    expect(auto.lines.some((l) => l.type === 'status' && /GradCache in mini-batches of 8 texts/.test(l.message))).toBe(true);
    expect(plain.done.gradCacheMiniBatch).toBeNull();
    // Step 1's loss, before any update: the same function of the same rows (dropout masks aside).
    const [a, p] = [auto.curve[0]![1], plain.curve[0]![1]];
    expect(Math.abs(a - p) / p).toBeLessThan(0.1);
  });
});
