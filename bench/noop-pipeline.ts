// A chain of no-op stages, for measuring the engine's per-stage overhead (workflow → activity → store).
import { writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { definePipeline, stage } from '../dsl/dsl.ts';
import { defineStage } from '../dsl/stage.ts';

export const noop = defineStage({
  kind: 'bench.noop',
  params: z.object({ i: z.number().int(), salt: z.string().default('') }),
  inputs: { previous: 'noop?' },
  output: 'noop',
  async run(ctx) {
    await writeFile(await ctx.out.file('n.txt'), `${ctx.params.i}${ctx.params.salt}`);
  },
});

const n = Number(process.env.BENCH_NOOP_STAGES ?? 10);

export default definePipeline({
  name: 'noop-chain',
  stages: Array.from({ length: n }, (_, i) =>
    stage({ id: `s${i}`, kind: noop, params: { i }, inputs: i === 0 ? {} : { previous: `s${i - 1}` } }),
  ),
});
