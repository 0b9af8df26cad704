import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalStore } from '../../artifacts/store.ts';
import { Encoder } from '../../activities/embedding/encoder.ts';
import { latestCheckpoint } from '../../activities/training/checkpoints.ts';
import { parseKernelLine } from '../../activities/training/kernelLines.ts';
import { collect, remote, spawnCliKilledAfterEach, testEnv, until } from '../support/cli.ts';
import { isAlive, memoryCappedPython, processesMentioning } from './support.ts';

// The train stage on real workers against the test Temporal server, driven through the CLI:
// a worker SIGKILLed mid-training, and kernel failures as `status` shows them.

const PIPELINE = 'test/train/pipeline.ts';
const PLANNED = 8;
const INTERVAL = 4;
const start = spawnCliKilledAfterEach();

const worker = (env: Record<string, string>) => start(['worker', '--queue', 'workflow', '--queue', 'cpu', '--queue', 'gpu', '--pipeline', PIPELINE], env);

/** The kernel's own record of every attempt (kept in the stage's workDir until the artifact exists). */
async function kernelLog(store: string) {
  const work = join(store, 'work');
  for (const key of await readdir(work).catch(() => [])) {
    const text = await readFile(join(work, key, 'checkpoints', 'progress.jsonl'), 'utf8').catch(() => undefined);
    if (text !== undefined) return { dir: join(work, key, 'checkpoints'), lines: text.split('\n').flatMap((l) => parseKernelLine(l) ?? []) };
  }
  return undefined;
}

describe('train stage on a worker', () => {
  it(
    'a worker SIGKILLed mid-training: its kernel dies too, a new worker resumes from the last checkpoint, steps run <= planned + one interval, the model loads',
    async () => {
      const env = remote(await testEnv());
      const first = worker(env);
      const result = collect(start(['run', PIPELINE, '--json'], env), 600_000);

      // Kill once a checkpoint is complete and training has gone past it.
      const seen = await until(
        async () => {
          const log = await kernelLog(env.EMBEDFLOW_STORE);
          const ckpt = log && (await latestCheckpoint(log.dir));
          const step = Math.max(0, ...(log?.lines ?? []).flatMap((l) => (l.type === 'progress' ? [l.step] : [])));
          return ckpt && step > ckpt.step ? { log, ckpt } : undefined;
        },
        300_000,
        'a complete checkpoint and a step past it',
      );
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
      const kernels = await processesMentioning(seen.log.dir);
      // The orphaned kernel notices its parent is gone (stdin closes) and stops: no second writer of checkpoints.
      await until(async () => (await processesMentioning(seen.log.dir)).length === 0, 20_000, 'the orphaned kernel to exit');
      for (const pid of kernels) expect(isAlive(pid)).toBe(false);
      const before = (await kernelLog(env.EMBEDFLOW_STORE))!;
      const stepsBefore = before.lines.filter((l) => l.type === 'progress').length;

      worker(env);
      const res = await result;
      expect(res.code, res.stderr).toBe(0);
      expect(res.json.status).toBe('completed');
      const model = res.json.stages.find((s: { id: string }) => s.id === 'model');
      expect(model.status).toBe('ran');
      const { steps, stepsRun, resumedFromStep } = model.stats as { steps: number; stepsRun: number; resumedFromStep: number };
      expect(steps).toBe(PLANNED);
      expect(resumedFromStep).toBeGreaterThanOrEqual(seen.ckpt.step);
      expect(stepsBefore + stepsRun).toBeLessThanOrEqual(PLANNED + INTERVAL);

      const artifact = await new LocalStore(env.EMBEDFLOW_STORE).open(model.artifact);
      const enc = await Encoder.load(artifact.dir, { threads: 1 });
      const e = await enc.encode(['富士山の高さは?'], { kind: 'query' });
      await enc.release();
      expect(e.dim).toBe(384);
      expect(Math.hypot(...e.data)).toBeCloseTo(1, 3);
    },
    600_000,
  );

  it('kernel failures fail the run at once with a named, non-retryable error: a bad parameter, and out of memory', async () => {
    const base = await testEnv();
    // The worker's python has 4 GB of address space: an absurd batch really runs out.
    const env = remote({ ...base, EMBEDFLOW_PYTHON: await memoryCappedPython(base.EMBEDFLOW_STORE, 4000) });
    worker(env);

    const bad = await collect(start(['run', PIPELINE, '--json', '--set', 'model.numNegatives=3'], env), 300_000);
    expect(bad.json.status, bad.stderr).toBe('failed');
    expect(bad.json.error).toMatchObject({ type: 'TrainerConfigError', stage: 'model' });
    expect(bad.json.error.message).toMatch(/--num-negatives 3 but .* has only 1 negative_\* columns \(fix: use at most 1/);

    const oom = await collect(
      start(['run', PIPELINE, '--json', '--set', 'pairs.synthetic=1024', '--set', 'model.batchSize=1024', '--set', 'model.miniBatchSize=1024', '--set', 'model.maxSeqLength=128'], env),
      300_000,
    );
    expect(oom.json.status, oom.stderr).toBe('failed');
    expect(oom.json.error).toMatchObject({ type: 'OutOfMemoryError', stage: 'model' });
    expect(oom.json.error.message).toMatch(/out of (CPU )?memory at batch size 1024.*try batchSize 512/);

    // Non-retryable: each kernel ran once (its log keeps one error line per attempt).
    const work = join(env.EMBEDFLOW_STORE, 'work');
    const errors: string[] = [];
    for (const key of await readdir(work)) {
      const text = await readFile(join(work, key, 'checkpoints', 'progress.jsonl'), 'utf8').catch(() => '');
      errors.push(...text.split('\n').flatMap((l) => { const p = parseKernelLine(l); return p?.type === 'error' ? [p.error] : []; }));
    }
    expect(errors.sort()).toEqual(['OutOfMemoryError', 'TrainerConfigError']);
  }, 600_000);
});
