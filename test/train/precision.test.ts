import { execFile } from 'node:child_process';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { trainReranker } from '../../activities/trainReranker.ts';
import { latestCheckpoint } from '../../activities/training/checkpoints.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { pairRows, writePairsParquet } from './fixtures.ts';
import { PYTHON, autoCpuPrecision, baseModelDir, datasetArtifact, modelArtifact, nativeBf16Flag, tempDir, tinyKernelRun } from './support.ts';
import { TRAIN_FILE } from '../../activities/artifactKinds/datasetArtifact.ts';

// The training precision: 'auto' picks bf16 on a CPU only where it multiplies bf16 natively
// (avx512_bf16, amx_bf16), fp32 elsewhere; bf16 forced on a CPU without them still trains (torch
// emulates it) and its checkpoints resume exactly.

let dir: string;
beforeAll(async () => {
  dir = await tempDir('ef-precision-');
});

/** A /proc/cpuinfo as Linux writes it (two logical CPUs) with these flags; null: none (no /proc, as on macOS). */
async function cpuinfo(flags: string[] | null): Promise<string> {
  const path = join(dir, `cpuinfo-${Math.random().toString(36).slice(2)}`);
  if (flags === null) return path;
  const cpu = (n: number) => `processor\t: ${n}\nvendor_id\t: AuthenticAMD\nmodel name\t: Test CPU\nflags\t\t: ${flags.join(' ')}\nbogomips\t: 4899.99\n`;
  await writeFile(path, `${cpu(0)}\n${cpu(1)}\n`);
  return path;
}

/**
 * pick_precision (trainer/device.py) as the kernel calls it, the CPU's flags read from a cpuinfo file
 * with `flags` ('proc': this machine's /proc/cpuinfo, as in a real run).
 */
async function pick(requested: string, device: string, flags: string[] | null | 'proc', gpuBf16 = true): Promise<{ precision?: string; reason?: string; error?: string }> {
  const path = flags === 'proc' ? '/proc/cpuinfo' : await cpuinfo(flags);
  const code = [
    'import json, sys',
    `sys.path.insert(0, ${JSON.stringify(join(PROJECT_ROOT, 'trainer'))})`,
    'import device',
    'requested, dev, path, gpu_bf16 = json.loads(sys.argv[1])',
    // The GPU's answer is torch.cuda's; this machine has no GPU, so it is given like the CPU's flags.
    'device._gpu_bf16 = lambda: gpu_bf16',
    'try:',
    '    c = device.pick_precision(requested, dev, path)',
    '    print(json.dumps({"precision": c.precision, "reason": c.reason}))',
    'except device.TrainerConfigError as e:',
    '    print(json.dumps({"error": str(e)}))',
  ].join('\n');
  const { stdout } = await promisify(execFile)(PYTHON, ['-c', code, JSON.stringify([requested, device, path, gpuBf16])]);
  return JSON.parse(stdout) as { precision?: string; reason?: string; error?: string };
}


describe('precision choice', () => {
  it("'auto' on a CPU: bf16 only with avx512_bf16 or amx_bf16, and it says why", async () => {
    const avx2 = ['fpu', 'sse4_2', 'avx', 'avx2', 'fma'];
    const avx512 = [...avx2, 'avx512f', 'avx512bw', 'avx512_vnni'];
    expect(await pick('auto', 'cpu', avx2)).toEqual({ precision: 'fp32', reason: expect.stringMatching(/^fp32: CPU has no avx512_bf16 or amx_bf16/) });
    // AVX-512 and VNNI without BF16 is still fp32: bf16 would be emulated.
    expect((await pick('auto', 'cpu', avx512)).precision).toBe('fp32');
    expect(await pick('auto', 'cpu', [...avx512, 'avx512_bf16'])).toEqual({ precision: 'bf16', reason: 'bf16: CPU has avx512_bf16' });
    expect(await pick('auto', 'cpu', [...avx512, 'avx512_bf16', 'amx_tile', 'amx_bf16'])).toEqual({ precision: 'bf16', reason: 'bf16: CPU has amx_bf16' });
    expect(await pick('auto', 'cpu', null)).toEqual({ precision: 'fp32', reason: expect.stringMatching(/flags are unknown/) });
  });

  it('an explicit choice is kept (bf16 without the flags says it is emulated); fp16 on a CPU is refused; GPUs as before', async () => {
    expect(await pick('bf16', 'cpu', ['avx2'])).toEqual({ precision: 'bf16', reason: expect.stringMatching(/asked for.*emulates it/) });
    expect(await pick('fp32', 'cpu', ['avx512_bf16'])).toEqual({ precision: 'fp32', reason: 'fp32: asked for' });
    expect((await pick('fp16', 'cpu', ['avx2'])).error).toMatch(/'fp16' needs a GPU/);
    expect(await pick('auto', 'cuda', null, true)).toEqual({ precision: 'bf16', reason: expect.stringMatching(/GPU supports it/) });
    expect(await pick('auto', 'cuda', null, false)).toEqual({ precision: 'fp16', reason: expect.stringMatching(/no bf16/) });
    expect((await pick('bf16', 'cuda', null, false)).error).toMatch(/no bf16 support/);
  });

  it("reads the flags from /proc/cpuinfo: this machine's choice follows its own flags", async () => {
    const native = nativeBf16Flag();
    expect(await pick('auto', 'cpu', 'proc')).toEqual(
      native ? { precision: 'bf16', reason: `bf16: CPU has ${native}` } : { precision: 'fp32', reason: expect.stringMatching(/^fp32: CPU has no/) },
    );
  });
});

describe('bf16 training on this CPU', { timeout: 600_000 }, () => {
  let model: string;
  let train: string;
  beforeAll(async () => {
    model = await baseModelDir();
    train = join(dir, TRAIN_FILE);
    await writePairsParquet(train, pairRows(1, 16));
  });

  it('trains when forced (emulated where the CPU lacks the flags), differs from fp32 by rounding only, and a bf16 checkpoint resumes exactly', async () => {
    const params = { batchSize: 4, maxSeqLength: 32, maxSteps: 4, checkpointEvery: 2, learningRate: 1e-4 };
    // Side by side, one thread each: the two-core machine is shared.
    const [bf16, fp32] = await Promise.all([
      tinyKernelRun(join(dir, 'bf16'), { ...params, precision: 'bf16' }, { model, train }),
      tinyKernelRun(join(dir, 'fp32'), { ...params, maxSteps: 2, precision: 'fp32' }, { model, train }),
    ]);
    expect(bf16.done).toMatchObject({ device: 'cpu', precision: 'bf16', stepsExecuted: 4 });
    const native = nativeBf16Flag();
    expect(bf16.done.precisionReason).toMatch(native ? /^bf16: asked for$/ : /emulates/);
    expect(bf16.done.peakRssMB).toBeGreaterThan(100);
    expect(bf16.curve.every(([, l]) => Number.isFinite(l) && l > 0)).toBe(true);
    // Autocast really ran in bf16 (the losses are not fp32's to the bit) and is correct (close to fp32's).
    const [b1, f1] = [bf16.curve[0]![1], fp32.curve[0]![1]];
    expect(b1).not.toBe(f1);
    expect(Math.abs(b1 - f1) / f1).toBeLessThan(0.05);

    // Resume from checkpoint-2 (optimizer, scheduler, RNG state written under bf16): steps 3-4 as before.
    const resumed = join(dir, 'resumed');
    await mkdir(resumed, { recursive: true });
    await cp(join(dir, 'bf16', 'checkpoint-2'), join(resumed, 'checkpoint-2'), { recursive: true });
    const from = await latestCheckpoint(resumed);
    const rest = await tinyKernelRun(resumed, { ...params, precision: 'bf16' }, { model, train, resumeFrom: from!.path });
    expect(rest.done.stepsExecuted).toBe(2);
    expect(rest.curve).toEqual(bf16.curve.slice(2));
  });
});

describe('the reranker trainer', { timeout: 600_000 }, () => {
  it("takes the same precision parameter: 'auto' as the train stage picks, bf16 forced trains and exports, and its stats say which and why", async () => {
    const store = await tempStore('ef-rerank-precision-');
    const inputs = { model: await modelArtifact(store), dataset: await datasetArtifact(store, pairRows(2, 16)) };
    const params = { maxSteps: 2, batchQueries: 4, negatives: 2, maxLength: 32, maxQueries: 8 };
    const [auto, bf16] = await Promise.all([
      runStage(trainReranker, { store, params, inputs }),
      runStage(trainReranker, { store, params: { ...params, precision: 'bf16' }, inputs }),
    ]);
    expect(auto.stats).toMatchObject({ steps: 2, precision: autoCpuPrecision() });
    expect(bf16.stats).toMatchObject({ steps: 2, precision: 'bf16' });
    expect(bf16.stats.precisionReason).toMatch(nativeBf16Flag() ? /^bf16: asked for$/ : /emulates/);
    expect(Number.isFinite(bf16.stats.finalLoss)).toBe(true);
    expect(bf16.stats.peakRssMB).toBeGreaterThan(100);
  });
});
