import { join } from 'node:path';
import type { ArtifactReader } from '../artifacts/store.ts';
import { defineStage } from '../dsl/stage.ts';
import { readModelInfo } from './artifactKinds/modelArtifact.ts';
import { InvalidInputError } from '../core/errors.ts';
import { UNKNOWN_FACTS, readCardFacts, writeModelCard } from './models/modelCard.ts';
import { latestCheckpoint, removeIncompleteCheckpoints } from './training/checkpoints.ts';
import { TrainParams, kernelArgs } from './training/kernelArgs.ts';
import { resolveLossScale } from './training/lossScale.ts';
import type { DoneLine, KernelLine } from './training/kernelLines.ts';
import { runKernel } from './training/runKernel.ts';
import { modelShape, tableRows, trainingNeeds } from './resourceEstimates.ts';
import { DEV_FILE, TRAIN_FILE } from './artifactKinds/datasetArtifact.ts';

export { TrainParams };

/** Points of the loss curve kept in the manifest (a long run is thinned to about this many). */
const MAX_CURVE_POINTS = 1000;

function hasFile(a: ArtifactReader, rel: string): boolean {
  return a.manifest.files.some((f) => f.path === rel);
}

function stModelDir(a: ArtifactReader, input: string): string {
  if (!hasFile(a, 'st/modules.json')) {
    throw new InvalidInputError(`input "${input}" has no st/modules.json (not a sentence-transformers model artifact)`, {
      where: `artifact ${a.digest}`,
      hint: 'wire it to a stage that outputs a `model` artifact (the model-preparation or train stage)',
    });
  }
  return join(a.dir, 'st');
}

/**
 * `model` + `dataset` → a fine-tuned `model` (st/, onnx/model.onnx, onnx/model_int8.onnx, model.json),
 * trained by trainer/train.py in a child process. Checkpoints live in the stage's workDir, so a retry,
 * a resumed run or a new run with the same cache key continues from the newest complete one.
 */
export const train = defineStage({
  kind: 'train',
  description: 'Fine-tune the embedding model with sentence-transformers (MNRL, in-batch + mined negatives), export it to ONNX',
  params: TrainParams,
  inputs: { model: 'model', dataset: 'dataset', guide: 'model?' },
  output: 'model',
  codeFiles: [
    '../trainer/train.py',
    '../trainer/train_config.py',
    '../trainer/failures.py',
    '../trainer/json_lines.py',
    '../trainer/checkpoints.py',
    '../trainer/progress.py',
    '../trainer/pairs.py',
    '../trainer/dev_evaluator.py',
    '../trainer/device.py',
    '../trainer/memory.py',
    '../trainer/parent_watch.py',
    '../trainer/export_model.py',
    '../trainer/merge.py',
  ],
  // The pipeline puts it on 'gpu' (with device 'auto' or 'cuda') when a GPU worker exists.
  defaults: { queue: 'cpu', startToCloseTimeout: '48h', heartbeatTimeout: '5m', retry: { maximumAttempts: 3, initialInterval: '10s' } },
  resources: async (p, inputs) =>
    trainingNeeds(await modelShape(inputs.model), { ...p, textsPerRow: textsPerRow(inputs.dataset, p.numNegatives), rows: tableRows(inputs.dataset) }),
  async run(ctx) {
    const p = ctx.params;
    const base = await readModelInfo(ctx.inputs.model.dir);
    const dataset = ctx.inputs.dataset;
    if (!hasFile(dataset, TRAIN_FILE)) {
      throw new InvalidInputError(`the dataset artifact has no ${TRAIN_FILE}`, {
        where: `artifact ${dataset.digest}`,
        hint: 'wire `dataset` to the dataset-building stage',
      });
    }

    const baseFacts = await readCardFacts(ctx.inputs.model.dir);
    const lossScale = resolveLossScale(p.scale, { baseModel: baseFacts?.baseModel ?? null, name: base.name });
    ctx.log.info(`loss scale ${lossScale.scale} (${lossScale.reason})`);

    const checkpointDir = join(ctx.workDir, 'checkpoints');
    for (const path of await removeIncompleteCheckpoints(checkpointDir)) ctx.log.warn(`removed half-written checkpoint ${path}`);
    const resume = await latestCheckpoint(checkpointDir);
    const reported = ctx.resume?.checkpoint;
    if (typeof reported === 'string' && resume?.path !== reported) {
      ctx.log.warn(`the last attempt reported checkpoint ${reported}; resuming from ${resume?.path ?? 'the start'} (newest complete one here)`);
    }
    if (resume) ctx.log.info(`resuming training from step ${resume.step}`, { checkpoint: resume.path });

    const args = kernelArgs(
      p,
      {
        model: stModelDir(ctx.inputs.model, 'model'),
        train: dataset.file(TRAIN_FILE),
        dev: hasFile(dataset, DEV_FILE) ? dataset.file(DEV_FILE) : undefined,
        guide: ctx.inputs.guide ? stModelDir(ctx.inputs.guide, 'guide') : undefined,
        outputDir: checkpointDir,
        exportDir: ctx.out.dir,
        resumeFrom: resume?.path,
      },
      {
        name: p.name ?? `${base.name}-ft`,
        source: `fine-tuned from ${base.name} (${ctx.inputs.model.digest.slice(0, 12)}) on dataset ${dataset.digest.slice(0, 12)}`,
        queryPrefix: base.queryPrefix,
        passagePrefix: base.passagePrefix,
        scale: lossScale.scale,
      },
    );

    let total: number | undefined;
    let lastLoss: number | null | undefined;
    let lastCheckpoint = resume?.path;
    const curve: Array<{ step: number; loss: number | null; lr: number | null; epoch: number }> = [];
    const evals: Array<{ step: number; metrics: Record<string, number | null> }> = [];
    const beat = (done: number, extra: Record<string, unknown> = {}) =>
      ctx.progress({ done, total, unit: 'steps', loss: lastLoss, checkpoint: lastCheckpoint, ...extra });
    beat(resume?.step ?? 0, { message: resume ? `resuming from step ${resume.step}` : 'starting the training kernel' });

    const onLine = (line: KernelLine) => {
      switch (line.type) {
        case 'start':
          beat(resume?.step ?? 0, { message: `training on ${line.gpu ?? line.device} (${line.precision}), ${line.rows} rows` });
          if (line.droppedRows) ctx.log.warn(`${line.droppedRows} training rows had an empty text and were left out`);
          break;
        case 'status':
          beat(curve.at(-1)?.step ?? resume?.step ?? 0, { message: line.message });
          break;
        case 'progress':
          total = line.total;
          lastLoss = line.loss;
          if (line.lastCheckpoint) lastCheckpoint = line.lastCheckpoint;
          curve.push({ step: line.step, loss: line.loss, lr: line.lr ?? null, epoch: line.epoch });
          beat(line.step, { epoch: line.epoch, lr: line.lr, samplesPerSecond: line.samplesPerSecond });
          break;
        case 'checkpoint':
          total = line.total;
          lastCheckpoint = line.path;
          beat(line.step, { message: `checkpoint at step ${line.step} (${line.seconds}s)` });
          break;
        case 'eval':
          evals.push({ step: line.step, metrics: line.metrics });
          // The Trainer's own evaluations (before the first step, every evalEvery) prefix the names with eval_.
          beat(line.step, { message: `dev ndcg@10 ${(line.metrics['dev_cosine_ndcg@10'] ?? line.metrics['eval_dev_cosine_ndcg@10'])?.toFixed(4) ?? '?'}` });
          break;
        default:
          break;
      }
    };

    const done: DoneLine = await runKernel({
      python: ctx.env.python,
      projectRoot: ctx.env.projectRoot,
      args,
      env: { ...ctx.env.vars },
      signal: ctx.signal,
      onLine,
      onSpawn: (pid) => ctx.log.info(`training kernel started (pid ${pid})`, { pid }),
    });
    beat(done.step, { message: 'trained and exported' });
    await writeModelCard(ctx.out.dir, {
      info: await readModelInfo(ctx.out.dir),
      // The license and base_model of the model it was fine-tuned from carry over.
      facts: baseFacts ?? (await readCardFacts(ctx.out.dir)) ?? UNKNOWN_FACTS,
      training: {
        base: { name: base.name, digest: ctx.inputs.model.digest },
        dataset: { digest: dataset.digest, rows: done.rows, droppedRows: done.droppedRows },
        params: {
          loss: p.loss,
          scale: lossScale.scale,
          ...(p.trainLayers !== 'all' ? { trainLayers: p.trainLayers } : {}),
          epochs: p.epochs,
          maxSteps: p.maxSteps,
          learningRate: p.learningRate,
          batchSize: p.batchSize,
          warmupRatio: p.warmupRatio,
          seed: p.seed,
        },
        steps: done.step,
        trainLoss: done.trainLoss ?? null,
        ...(done.merge ? { mergeShare: done.merge.share } : {}),
        device: done.device,
        precision: done.precision,
        devMetrics: done.evalMetrics,
      },
    });

    const every = Math.max(1, Math.ceil(curve.length / MAX_CURVE_POINTS));
    const ckptSeconds = done.checkpointSeconds;
    const ndcg = done.evalMetrics['dev_cosine_ndcg@10'];
    return {
      stats: {
        steps: done.step,
        stepsRun: done.stepsExecuted,
        lossScale: lossScale.scale,
        trainLayers: p.trainLayers,
        resumedFromStep: resume?.step ?? 0,
        ...(done.trainLoss != null ? { trainLoss: round(done.trainLoss, 4) } : {}),
        samplesPerSecond: done.samplesPerSecond ?? 0,
        trainSeconds: done.trainSeconds,
        checkpoints: ckptSeconds.length,
        ...(ndcg != null ? { devNdcg10: round(ndcg, 4) } : {}),
        ...(done.merge ? { mergeShare: done.merge.share } : {}),
        device: done.device,
        precision: done.precision,
        ...(done.precisionReason ? { precisionReason: done.precisionReason } : {}),
        ...(done.peakGpuMemoryMB != null ? { peakGpuMemoryMB: done.peakGpuMemoryMB } : {}),
        ...(done.peakRssMB != null ? { peakRssMB: done.peakRssMB } : {}),
        ...(done.gradCacheMiniBatch != null ? { gradCacheMiniBatch: done.gradCacheMiniBatch } : {}),
        ...(done.frozenCache ? { frozenCacheMB: done.frozenCache.mb, frozenCacheHitRate: round(done.frozenCache.hits / Math.max(1, done.frozenCache.hits + done.frozenCache.misses), 3) } : {}),
      },
      meta: {
        base: { name: base.name, digest: ctx.inputs.model.digest },
        dataset: dataset.digest,
        rows: done.rows,
        droppedRows: done.droppedRows,
        lossCurve: curve.filter((_, i) => i % every === 0 || i === curve.length - 1),
        evals,
        evalMetrics: done.evalMetrics,
        ...(done.merge ? { merge: done.merge } : {}),
        checkpointSeconds: ckptSeconds,
        ...(done.frozenCache ? { frozenCache: done.frozenCache } : {}),
        export: done.export,
      },
    };
  },
});

/** Anchor, positive and the negatives a training row brings (buildDataset's numNegatives, at most the stage's). */
function textsPerRow(dataset: ArtifactReader, numNegatives: number | undefined): number {
  const built = dataset.manifest.meta.stats as { numNegatives?: unknown } | undefined;
  const inDataset = typeof built?.numNegatives === 'number' ? built.numNegatives : 3;
  return 2 + Math.min(inDataset, numNegatives ?? inDataset);
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
