import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { defineStage } from '../dsl/stage.ts';
import { OutOfMemoryError, TrainerConfigError, TrainerFailedError } from '../core/errors.ts';
import { RerankerInfo } from './rerank/crossEncoder.ts';
import { LineSplitter, TailBuffer } from './training/kernelLines.ts';
import { outOfMemoryCause, watchOomKills } from './training/oomKills.ts';
import { spawnGroup } from './training/processGroup.ts';
import { modelShape, trainingNeeds } from './resourceEstimates.ts';
import { TRAIN_FILE } from './artifactKinds/datasetArtifact.ts';

/**
 * A small domain cross-encoder for the reranker comparison, trained from the same synthetic pairs
 * as the fine-tuned bi-encoder and started from the base model (no reranker can be downloaded on an
 * offline machine). Kept small so it trains on a CPU in minutes: a few hundred listwise steps.
 * A retry starts training over; the stage is short enough that checkpoints would cost more than they save.
 */

const Params = z
  .object({
    maxSteps: z.number().int().positive().default(200).describe('Stop after this many optimisation steps'),
    epochs: z.number().positive().default(1).describe('Passes over the training queries (maxSteps ends training first when it comes first)'),
    batchQueries: z.number().int().positive().default(8).describe('Queries per step; each brings its positive and `negatives` hard negatives.'),
    negatives: z.number().int().min(1).default(3).describe("Hard negatives per query in each step, taken from the dataset's mined negatives"),
    maxQueries: z.number().int().nonnegative().default(0).describe('Use at most this many training queries (0 = all).'),
    maxLength: z.number().int().min(16).max(512).default(256).describe('Most tokens of a query-passage pair; longer pairs are truncated'),
    lr: z.number().positive().default(3e-5).describe('Learning rate'),
    seed: z.number().int().default(42).describe('Seed of the query order and sampling'),
    precision: z
      .enum(['auto', 'fp32', 'bf16'])
      .default('auto')
      .describe('auto: bf16 where the CPU has avx512_bf16 or amx_bf16 (native bf16 maths), fp32 elsewhere (bf16 would be emulated: slower)'),
  })
  .strict();

const Progress = z.object({ event: z.literal('progress'), step: z.number(), total: z.number(), loss: z.number() });

export const trainReranker = defineStage({
  kind: 'trainReranker',
  description: 'Train a small cross-encoder (reranker) on the dataset, from the base model, exported to ONNX.',
  params: Params,
  inputs: { model: 'model', dataset: 'dataset' },
  output: 'reranker',
  codeFiles: ['../trainer/train_reranker.py', '../trainer/device.py', '../trainer/memory.py', '../trainer/failures.py', '../trainer/parent_watch.py'],
  defaults: { queue: 'cpu', startToCloseTimeout: '4h', heartbeatTimeout: '10m', retry: { maximumAttempts: 2 } },
  // Each step scores batchQueries × (1 + negatives) query-passage pairs with their graph; the whole model trains.
  resources: async (p, inputs) =>
    trainingNeeds(await modelShape(inputs.model), {
      loss: 'cross-encoder',
      batchSize: p.batchQueries,
      textsPerRow: 1 + p.negatives,
      maxSeqLength: p.maxLength,
      device: 'cpu',
      precision: p.precision,
      freezeEmbeddings: false,
    }),
  async run(ctx) {
    const p = ctx.params;
    const script = join(ctx.env.projectRoot, 'trainer', 'train_reranker.py');
    const args = [
      script,
      '--model', join(ctx.inputs.model.dir, 'st'),
      '--train', ctx.inputs.dataset.file(TRAIN_FILE),
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
      '--precision', p.precision,
      '--exit-with-stdin',
    ];
    const started = performance.now();
    await runTrainer(ctx.env.python, args, ctx.env.projectRoot, ctx.signal, p.batchQueries, (ev) =>
      ctx.progress({ done: ev.step, total: ev.total, unit: 'steps', message: `loss ${ev.loss.toFixed(4)}` }),
    );
    const info = RerankerInfo.passthrough().parse(JSON.parse(await readFile(join(ctx.out.dir, 'reranker.json'), 'utf8')));
    const num = (k: string) => (typeof info[k] === 'number' ? (info[k] as number) : 0);
    const str = (k: string) => (typeof info[k] === 'string' ? { [k]: info[k] as string } : {});
    return {
      stats: {
        steps: num('steps'),
        trainQueries: num('trainQueries'),
        finalLoss: Number(num('finalLoss').toFixed(4)),
        seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
        ...str('precision'),
        ...str('precisionReason'),
        ...(typeof info.peakRssMB === 'number' ? { peakRssMB: info.peakRssMB } : {}),
      },
      meta: { reranker: info },
    };
  },
});

/**
 * Run the Python trainer in its own process group (see training/processGroup.ts: cancellation kills
 * the group; if this process dies, the trainer sees its stdin close and exits), forwarding its JSON
 * progress lines.
 */
async function runTrainer(
  python: string,
  args: string[],
  projectRoot: string,
  signal: AbortSignal,
  batchQueries: number,
  onProgress: (p: z.infer<typeof Progress>) => void,
): Promise<void> {
  signal.throwIfAborted();
  const oomWatch = await watchOomKills();
  const proc = await spawnGroup(python, args, { cwd: projectRoot, env: { ...process.env, PYTHONUNBUFFERED: '1' } }).catch((err: unknown) => {
    throw new TrainerFailedError(`could not start ${python}: ${(err as Error).message}`, { hint: 'run scripts/setup.sh', cause: err });
  });
  const onAbort = () => void proc.terminate();
  signal.addEventListener('abort', onAbort, { once: true });
  const stdout = new LineSplitter();
  const stderr = new TailBuffer(40);
  const handle = (line: string) => {
    if (!line.startsWith('{')) return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      return;
    }
    const ev = Progress.safeParse(json);
    if (ev.success) onProgress(ev.data);
  };
  proc.child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk).forEach(handle));
  proc.child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  const exit = await proc.exited;
  signal.removeEventListener('abort', onAbort);
  stdout.end().forEach(handle);
  if (signal.aborted) throw signal.reason;
  if (exit.code === 0) return;
  const tail = stderr.text();
  const configLine = tail.split('\n').find((l) => l.startsWith('RerankerError: '));
  if (exit.code === 2 && configLine) {
    throw new TrainerConfigError(configLine.slice('RerankerError: '.length), { where: 'trainer/train_reranker.py' });
  }
  const oom = await outOfMemoryCause(exit.signal, tail, oomWatch);
  if (oom) {
    const hint = `try batchQueries ${Math.max(1, Math.floor(batchQueries / 2))} or a smaller maxLength`;
    throw new OutOfMemoryError(`out of memory at batchQueries ${batchQueries}: train_reranker.py ${oom} (fix: ${hint})`, {
      where: 'batchQueries',
      hint,
    });
  }
  // `status` shows the message only, so it carries the trainer's last words.
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
  throw new TrainerFailedError(`train_reranker.py ${how}; its last stderr lines:\n${tail.split('\n').slice(-15).join('\n')}`, {
    where: 'trainer/train_reranker.py',
    hint: 'see the stderr lines above; a retry trains again from the start',
  });
}
