import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { defineStage } from '../pipelines/stage.ts';
import { TrainerConfigError, TrainerFailedError } from './errors.ts';
import { RerankerInfo } from './rerank/crossEncoder.ts';

/**
 * A small domain cross-encoder for the reranker comparison, trained from the same synthetic pairs
 * as the fine-tuned bi-encoder and started from the base model (no reranker can be downloaded on an
 * offline machine). Kept small so it trains on a CPU in minutes: a few hundred listwise steps.
 * A retry starts training over; the stage is short enough that checkpoints would cost more than they save.
 */

const Params = z
  .object({
    maxSteps: z.number().int().positive().default(200),
    epochs: z.number().positive().default(1),
    /** Queries per step; each brings its positive and `negatives` hard negatives. */
    batchQueries: z.number().int().positive().default(8),
    negatives: z.number().int().min(1).default(3),
    /** Use at most this many training queries (0 = all). */
    maxQueries: z.number().int().nonnegative().default(0),
    maxLength: z.number().int().min(16).max(512).default(256),
    lr: z.number().positive().default(3e-5),
    seed: z.number().int().default(42),
  })
  .strict();

const Progress = z.object({ event: z.literal('progress'), step: z.number(), total: z.number(), loss: z.number() });

export const trainReranker = defineStage({
  kind: 'trainReranker',
  description: 'Train a small cross-encoder (reranker) on the dataset, from the base model, exported to ONNX.',
  params: Params,
  inputs: { model: 'model', dataset: 'dataset' },
  output: 'reranker',
  codeFiles: ['../trainer/train_reranker.py'],
  defaults: { queue: 'cpu', startToCloseTimeout: '4h', heartbeatTimeout: '10m', retry: { maximumAttempts: 2 } },
  async run(ctx) {
    const p = ctx.params;
    const script = join(ctx.env.projectRoot, 'trainer', 'train_reranker.py');
    const args = [
      script,
      '--model', join(ctx.inputs.model.dir, 'st'),
      '--train', ctx.inputs.dataset.file('train.parquet'),
      '--out', ctx.out.dir,
      '--name', `reranker-${ctx.inputs.model.digest.slice(0, 12)}`,
      '--max-steps', String(p.maxSteps),
      '--epochs', String(p.epochs),
      '--batch-queries', String(p.batchQueries),
      '--negatives', String(p.negatives),
      '--max-queries', String(p.maxQueries),
      '--max-length', String(p.maxLength),
      '--lr', String(p.lr),
      '--seed', String(p.seed),
    ];
    const started = performance.now();
    await runTrainer(ctx.env.python, args, ctx.signal, (ev) =>
      ctx.progress({ done: ev.step, total: ev.total, unit: 'steps', message: `loss ${ev.loss.toFixed(4)}` }),
    );
    const info = RerankerInfo.passthrough().parse(JSON.parse(await readFile(join(ctx.out.dir, 'reranker.json'), 'utf8')));
    const num = (k: string) => (typeof info[k] === 'number' ? (info[k] as number) : 0);
    return {
      stats: {
        steps: num('steps'),
        trainQueries: num('trainQueries'),
        finalLoss: Number(num('finalLoss').toFixed(4)),
        seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
      },
      meta: { reranker: info },
    };
  },
});

/** Run the Python trainer, forwarding its JSON progress lines; killed when the stage is cancelled. */
function runTrainer(python: string, args: string[], signal: AbortSignal, onProgress: (p: z.infer<typeof Progress>) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    signal.throwIfAborted();
    const child = spawn(python, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYTHONUNBUFFERED: '1' } });
    const stderr: string[] = [];
    const kill = () => {
      child.kill('SIGTERM');
      setTimeout(() => child.exitCode === null && child.kill('SIGKILL'), 5000).unref();
    };
    signal.addEventListener('abort', kill, { once: true });
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        return;
      }
      const ev = Progress.safeParse(json);
      if (ev.success) onProgress(ev.data);
    });
    createInterface({ input: child.stderr }).on('line', (line) => {
      stderr.push(line);
      if (stderr.length > 40) stderr.shift();
    });
    child.on('error', (err) => reject(new TrainerFailedError(`could not start ${python}`, { cause: err, hint: 'run scripts/setup.sh' })));
    child.on('close', (code, sig) => {
      signal.removeEventListener('abort', kill);
      if (signal.aborted) return reject(signal.reason);
      if (code === 0) return resolve();
      const configLine = stderr.find((l) => l.startsWith('RerankerError: '));
      if (code === 2 && configLine) {
        return reject(new TrainerConfigError(configLine.slice('RerankerError: '.length), { where: 'trainer/train_reranker.py' }));
      }
      reject(
        new TrainerFailedError(`train_reranker.py exited with ${sig ?? `code ${code}`}`, {
          where: 'trainer/train_reranker.py',
          hint: `its last output:\n${stderr.slice(-15).join('\n')}`,
        }),
      );
    });
  });
}
