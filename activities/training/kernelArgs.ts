import { z } from 'zod';

export const TrainParams = z.strictObject({
  loss: z
    .enum(['mnrl', 'cached-mnrl', 'gist'])
    .default('mnrl')
    .describe('MultipleNegativesRankingLoss; its GradCache version (big batches in bounded memory); GISTEmbed (guided in-batch negatives)'),
  epochs: z.number().positive().default(1).describe('Passes over the training rows (maxSteps ends training first when set)'),
  maxSteps: z.number().int().positive().optional().describe('stop after this many optimisation steps (overrides epochs)'),
  learningRate: z.number().positive().lt(1).default(2e-5).describe('Peak learning rate (AdamW), reached after warm-up'),
  warmupRatio: z.number().min(0).lt(1).default(0.1).describe('Share of the steps spent warming the learning rate up from 0'),
  batchSize: z.number().int().positive().default(32).describe('in-batch negatives: bigger is better, memory permitting'),
  miniBatchSize: z
    .number()
    .int()
    .positive()
    .optional()
    .describe(
      "GradCache (the MNRL loss in bounded memory, for one more forward pass): texts embedded with gradients at once. Loss 'cached-mnrl' uses it (default 32); 'mnrl' when it is below batchSize, and by itself on a CPU when a step would hold more than 4,096 tokens' graph (mini-batches of 4,096 / max length); set it >= batchSize to turn that off",
    ),
  seed: z.number().int().min(0).default(42).describe('Seed of shuffling and initialisation'),
  maxSeqLength: z.number().int().min(8).optional().describe("truncate training inputs (default: the model's limit)"),
  numNegatives: z.number().int().min(0).optional().describe('use at most this many mined negatives per row (default: all)'),
  device: z.enum(['auto', 'cpu', 'cuda']).default('auto').describe("'cuda' needs the stage on queue 'gpu'"),
  cpuThreads: z.number().int().positive().optional().describe('torch CPU threads (default: one per core); fewer helps on a shared machine'),
  precision: z
    .enum(['auto', 'fp32', 'bf16', 'fp16'])
    .default('auto')
    .describe(
      'auto: the fastest exact-enough choice: bf16 on a GPU (fp16 before Ampere); on a CPU bf16 only where it has avx512_bf16 or amx_bf16, else fp32 (elsewhere bf16 is emulated: slower)',
    ),
  checkpointEvery: z.number().int().positive().default(500).describe('steps between checkpoints (also written at the end)'),
  keepCheckpoints: z.number().int().positive().default(2).describe('Checkpoints kept in the work folder (older ones are deleted)'),
  logEvery: z
    .number()
    .int()
    .positive()
    .optional()
    .describe('steps between progress reports (default: every step on a CPU, where a step takes seconds to minutes; 10 on a GPU)'),
  evaluate: z.boolean().default(true).describe('retrieval metrics on the dataset’s dev split after training'),
  evalEvery: z.number().int().positive().optional().describe('also evaluate every N steps'),
  name: z.string().min(1).optional().describe('model name in model.json (default: "<base name>-ft")'),
  freezeEmbeddings: z
    .boolean()
    .default(false)
    .describe("keep the base's word embeddings as they are (most of a multilingual model's weights; few tokens appear in a corpus)"),
  trainLayers: z
    .union([z.number().int().positive(), z.literal('all')])
    .default('all')
    .describe('train only the top N transformer layers (the embeddings and the layers below stay as the base has them), or all of them'),
  frozenCacheMB: z
    .number()
    .int()
    .min(0)
    .default(2048)
    .describe(
      'with trainLayers: MB of the frozen layers’ output kept per text, so a chunk that comes back (as a positive, as other queries’ negative, each epoch) runs through them once; texts beyond it are computed each time; 0: off',
    ),
  scale: z
    .union([z.number().positive().max(1000), z.literal('auto')])
    .default('auto')
    .describe(
      "similarity scale of the contrastive loss (1 / temperature); 'auto': the base's own where its family's is published (multilingual-e5: temperature 0.01, scale 100), else sentence-transformers' 20",
    ),
  mergeWithBase: z
    .union([z.number().min(0).max(1), z.literal('auto')])
    .default(1)
    .describe("share of the fine-tuned weights in the saved model (WiSE-FT): 1 as trained, 0.5 halfway to the base, 0 the base; 'auto': 0.5 or 1, whichever scores higher on the dev split, only if its gain over the base is beyond noise (paired bootstrap 95% interval of per-query nDCG@10 above 0), else 0"),
});
export type TrainParams = z.output<typeof TrainParams>;

export interface KernelPaths {
  model: string;
  train: string;
  dev?: string;
  guide?: string;
  outputDir: string;
  /** Where the `model` artifact is exported; without it the kernel only trains (tests, benchmarks). */
  exportDir?: string;
  resumeFrom?: string;
}

export interface KernelModelInfo {
  name: string;
  source: string;
  queryPrefix: string;
  passagePrefix: string;
  /** The loss's scale, `scale: 'auto'` resolved against the base (lossScale.ts). */
  scale: number;
}

/** The stage's parameters as trainer/train.py flags. */
export function kernelArgs(p: TrainParams, paths: KernelPaths, info: KernelModelInfo): string[] {
  const flags: Array<[string, string | number | undefined]> = [
    ['model', paths.model],
    ['train', paths.train],
    ['dev', paths.dev],
    ['output-dir', paths.outputDir],
    ['export-dir', paths.exportDir],
    ['resume-from', paths.resumeFrom],
    ['name', info.name],
    ['source', info.source],
    ['query-prefix', info.queryPrefix],
    ['passage-prefix', info.passagePrefix],
    ['loss', p.loss],
    ['scale', info.scale],
    ['train-layers', p.trainLayers === 'all' ? undefined : p.trainLayers],
    ['frozen-cache-mb', p.trainLayers === 'all' ? undefined : p.frozenCacheMB],
    ['guide-model', paths.guide],
    ['mini-batch-size', p.miniBatchSize],
    ['epochs', p.epochs],
    ['max-steps', p.maxSteps],
    ['learning-rate', p.learningRate],
    ['warmup-ratio', p.warmupRatio],
    ['batch-size', p.batchSize],
    ['seed', p.seed],
    ['max-seq-length', p.maxSeqLength],
    ['num-negatives', p.numNegatives],
    ['device', p.device],
    ['threads', p.cpuThreads],
    ['precision', p.precision],
    ['save-steps', p.checkpointEvery],
    ['keep-checkpoints', p.keepCheckpoints],
    ['logging-steps', p.logEvery],
    ['eval-steps', p.evalEvery],
  ];
  // --flag=value: a value starting with '-' (a prefix, a name) is never taken for a flag.
  const args = flags.filter(([, v]) => v !== undefined).map(([k, v]) => `--${k}=${v}`);
  if (!p.evaluate) args.push('--no-evaluate');
  if (p.freezeEmbeddings) args.push('--freeze-embeddings');
  if (p.mergeWithBase !== 1) args.push(`--merge-with-base=${p.mergeWithBase}`);
  return args;
}
