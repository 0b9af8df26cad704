import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildPlan } from '../../dsl/dsl.ts';
import { loadPipeline } from '../../dsl/load.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';

// pipelines/baselines.ts promises the recipe's own first stages, so a recipe run after it finds them cached.

const plan = async (file: string) =>
  buildPlan(await loadPipeline(join(PROJECT_ROOT, 'pipelines', file)), { taskQueues: { workflow: 'q', cpu: 'q-cpu', gpu: 'q-gpu' } });

describe('pipelines/baselines.ts', () => {
  it('plans the recipe’s documents, chunks and base model unchanged, and evaluates base with BM25 and no training', async () => {
    const [baselines, recipe] = await Promise.all([plan('baselines.ts'), plan('domain-embedding.ts')]);
    const same = (p: typeof recipe, id: string) => {
      const s = p.stages.find((x) => x.id === id)!;
      return { kind: s.kind, params: s.params, inputs: s.inputs, fingerprint: s.fingerprint };
    };
    for (const id of ['documents', 'chunks', 'baseModel']) expect(same(baselines, id), id).toEqual(same(recipe, id));
    expect(baselines.stages.map((s) => s.kind)).not.toContain('train');
    const evaluation = baselines.stages.find((s) => s.id === 'evaluation')!;
    expect(evaluation.inputs).not.toHaveProperty('finetuned');
    expect(evaluation.params).toMatchObject({ lexical: true });
  });
});
