import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { PipelineLoadError, PipelineValidationError, StageParamsError } from '../../core/errors.ts';
import { buildPlan, type DroppedDefault, definePipeline, extendPipeline, parseOverride, stage } from '../../dsl/dsl.ts';
import { loadPipeline } from '../../dsl/load.ts';
import { defineStage } from '../../dsl/stage.ts';
import { combine, countChars, countWords } from '../fixtures/pipelines/words.ts';

// Every invalid pipeline fails when it loads, naming the file, the stage and the field.

const THIS_FILE = new URL(import.meta.url).pathname;
const WORDS_FILE = new URL('../fixtures/pipelines/words.ts', import.meta.url).pathname;
const queues = { workflow: 'q', cpu: 'q-cpu', gpu: 'q-gpu' };
const corpus = { corpus: { type: 'directory' as const, default: '../fixtures/smallcorpus' } };

/** Every error here comes from a pipeline declared in this file, so each must name this file. */
function expectError(fn: () => unknown, cls: new (...a: never[]) => Error, ...fragments: string[]) {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(cls);
  expect((caught as { where?: string }).where).toContain(THIS_FILE);
  const text = (caught as { describe(): string }).describe();
  for (const f of fragments) expect(text).toContain(f);
}

describe('pipeline validation at load', () => {
  it('refuses a cycle and names it', () => {
    expectError(
      () =>
        definePipeline({
          name: 'cyclic',
          inputs: corpus,
          stages: [
            stage({ id: 'a', kind: combine, inputs: { words: 'b', chars: 'b' } }),
            stage({ id: 'b', kind: combine, inputs: { words: 'a', chars: 'a' } }),
          ],
        }),
      PipelineValidationError,
      'cycle',
      'a → b → a',
    );
  });

  it('refuses an unknown stage id in the wiring', () => {
    expectError(
      () => definePipeline({ name: 'p', inputs: corpus, stages: [stage({ id: 'w', kind: countWords, inputs: { corpus: 'corpse' } })] }),
      PipelineValidationError,
      'stage "w"',
      'unknown stage "corpse"',
    );
  });

  it('refuses duplicate stage ids', () => {
    expectError(
      () =>
        definePipeline({
          name: 'p',
          inputs: corpus,
          stages: [stage({ id: 'w', kind: countWords, inputs: { corpus: 'corpus' } }), stage({ id: 'w', kind: countChars, inputs: { corpus: 'corpus' } })],
        }),
      PipelineValidationError,
      'duplicate stage id "w"',
      'stage "w"',
    );
  });

  it('refuses an input wired to an output of the wrong kind', () => {
    expectError(
      () =>
        definePipeline({
          name: 'p',
          inputs: corpus,
          stages: [stage({ id: 'w', kind: countWords, inputs: { corpus: 'corpus' } }), stage({ id: 'x', kind: countWords, inputs: { corpus: 'w' } })],
        }),
      PipelineValidationError,
      'stage "x"',
      'input "corpus" needs a "files" artifact but "w" produces "counts"',
    );
  });

  it('refuses a required input left unwired, and an unknown input name', () => {
    expectError(
      () => definePipeline({ name: 'p', inputs: corpus, stages: [stage({ id: 'w', kind: countWords })] }),
      PipelineValidationError,
      'input "corpus" (files) is not wired',
    );
    expectError(
      () =>
        definePipeline({
          name: 'p',
          inputs: corpus,
          // @ts-expect-error -- the DSL's types catch this too
          stages: [stage({ id: 'w', kind: countWords, inputs: { corpus: 'corpus', extra: 'corpus' } })],
        }),
      PipelineValidationError,
      'unknown input "extra"',
    );
  });

  it('refuses bad parameters when the plan is built, naming stage and field', async () => {
    const p = definePipeline({
      name: 'p',
      inputs: corpus,
      // Types allow any number; the schema's bound (≥ 0) is checked when the plan is built.
      stages: [stage({ id: 'w', kind: countWords, params: { sleepMs: -5 }, inputs: { corpus: 'corpus' } })],
    });
    await expect(buildPlan(p, { taskQueues: queues })).rejects.toThrow(StageParamsError);
    await expect(buildPlan(p, { taskQueues: queues })).rejects.toMatchObject({
      message: expect.stringContaining('params.sleepMs'),
      where: `${THIS_FILE}: stage "w" (test.countWords)`,
    });
  });

  it('refuses a misspelt parameter rather than ignoring it', async () => {
    const p = definePipeline({ name: 'p', inputs: corpus, stages: [stage({ id: 'w', kind: countWords, inputs: { corpus: 'corpus' } })] });
    await expect(buildPlan(p, { taskQueues: queues, overrides: [parseOverride('w.sleepMS=5')] })).rejects.toMatchObject({
      message: expect.stringContaining('sleepMS'),
      where: `${THIS_FILE}: stage "w" (test.countWords)`,
    });
    await expect(buildPlan(p, { taskQueues: queues, overrides: [parseOverride('nope.x=1')] })).rejects.toMatchObject({
      message: expect.stringContaining('no stage "nope"'),
      where: THIS_FILE,
    });
  });

  it('applies --set overrides with JSON values', async () => {
    const p = definePipeline({ name: 'p', inputs: corpus, stages: [stage({ id: 'w', kind: countWords, inputs: { corpus: 'corpus' } })] });
    const plan = await buildPlan(p, { taskQueues: queues, overrides: [parseOverride('w.sleepMs=20'), parseOverride('w.salt=hello')] });
    expect(plan.stages[0]!.params).toMatchObject({ sleepMs: 20, salt: 'hello', failAttempts: 0 });
    expect(plan.inputs[0]!.path).toMatch(/fixtures\/smallcorpus$/);
  });

  it('lets a variant override params and activity options of its base', async () => {
    const base = definePipeline({ name: 'base', inputs: corpus, stages: [stage({ id: 'w', kind: countWords, inputs: { corpus: 'corpus' } })] });
    const variant = extendPipeline(base, { name: 'variant', stages: { w: { params: { salt: 'v' }, queue: 'gpu', heartbeatTimeout: '1m' } } });
    const plan = await buildPlan(variant, { taskQueues: queues });
    expect(plan.pipeline).toBe('variant');
    expect(plan.stages[0]).toMatchObject({ params: { salt: 'v' }, activity: { queue: 'gpu', heartbeatTimeout: '1m' } });
    expectError(() => extendPipeline(base, { name: 'v2', stages: { nope: { queue: 'gpu' } } }), PipelineValidationError, 'no stage "nope"');
  });

  it('reports a syntax error in a pipeline file with its location', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ef-dsl-'));
    const file = join(dir, 'broken.ts');
    await writeFile(file, 'export default definePipeline({ name: "x", stages: [ \n');
    await expect(loadPipeline(file)).rejects.toThrow(PipelineLoadError);
    await expect(loadPipeline(file)).rejects.toMatchObject({ where: file });
    await writeFile(join(dir, 'nodefault.ts'), 'export const x = 1;\n');
    await expect(loadPipeline(join(dir, 'nodefault.ts'))).rejects.toMatchObject({
      message: expect.stringContaining('no `export default definePipeline'),
      where: join(dir, 'nodefault.ts'),
    });
    await expect(loadPipeline(join(dir, 'missing.ts'))).rejects.toMatchObject({
      message: expect.stringContaining('not found'),
      where: join(dir, 'missing.ts'),
    });
  });

  it('lets a pipeline file define its own stage kinds, and refuses two kinds with one name', () => {
    const kind = defineStage({
      kind: 'test.custom',
      params: z.object({}),
      inputs: {},
      output: 'nothing',
      async run() {
        return {};
      },
    });
    expect(kind.module).toBe(THIS_FILE);
    expect(() => definePipeline({ name: 'custom', stages: [stage({ id: 'c', kind })] })).not.toThrow();

    // A kind name already taken by another module (words.ts defines test.countWords): refused, naming both files.
    expectError(
      () => defineStage({ ...countChars, kind: 'test.countWords' }),
      PipelineValidationError,
      'stage kind "test.countWords" is defined twice',
      WORDS_FILE,
      'give one of them another `kind` name',
    );
  });
});

describe('optional pipeline inputs', () => {
  const pipeline = definePipeline({
    name: 'optional-branch',
    inputs: { corpus: { type: 'directory', default: '../fixtures/smallcorpus' }, extra: { type: 'directory', optional: true } },
    stages: [
      stage({ id: 'words', kind: countWords, inputs: { corpus: 'corpus' } }),
      stage({ id: 'extraWords', kind: countWords, inputs: { corpus: 'extra' } }),
      stage({ id: 'summary', kind: combine, inputs: { words: 'words', chars: 'extraWords' } }),
    ],
  });

  it('leaves out the stages that need an input the run does not give', async () => {
    const plan = await buildPlan(pipeline, { taskQueues: queues });
    expect(plan.stages.map((s) => s.id)).toEqual(['words']);
  });

  it('keeps them when the input is given', async () => {
    const plan = await buildPlan(pipeline, { taskQueues: queues, inputs: { extra: '.' } });
    expect(plan.stages.map((s) => s.id)).toEqual(['words', 'extraWords', 'summary']);
  });
});

describe('defaults that belong together', () => {
  const paired = definePipeline({
    name: 'paired',
    inputs: {
      corpus: { type: 'directory', default: '../fixtures/smallcorpus' },
      extra: { type: 'directory', optional: true, default: '../fixtures/smallcorpus', pairedWith: 'corpus', description: 'extra words' },
    },
    stages: [
      stage({ id: 'words', kind: countWords, inputs: { corpus: 'corpus' } }),
      stage({ id: 'extraWords', kind: countWords, inputs: { corpus: 'extra' } }),
    ],
  });
  const planOf = async (inputs: Record<string, string>) => {
    const dropped: DroppedDefault[] = [];
    const plan = await buildPlan(paired, { taskQueues: queues, inputs, onDroppedDefault: (d) => dropped.push(d) });
    return { stages: plan.stages.map((s) => s.id), dropped };
  };

  it('keeps a paired default with its partner’s default, and drops it (saying so) when the run gives its own', async () => {
    expect(await planOf({})).toEqual({ stages: ['words', 'extraWords'], dropped: [] });
    // The partner's default given explicitly is still the default: the pair holds.
    expect((await planOf({ corpus: new URL('../fixtures/smallcorpus', import.meta.url).pathname })).dropped).toEqual([]);
    const own = await planOf({ corpus: '/tmp' });
    expect(own.stages).toEqual(['words']);
    expect(own.dropped).toEqual([{ input: 'extra', pairedWith: 'corpus', default: new URL('../fixtures/smallcorpus', import.meta.url).pathname, description: 'extra words' }]);
    // Given explicitly, the paired input is used whatever the partner.
    expect((await planOf({ corpus: '/tmp', extra: '/tmp' })).stages).toEqual(['words', 'extraWords']);
  });

  it('drops a paired default in a variant that replaces its partner’s default', async () => {
    const variant = extendPipeline(paired, { name: 'variant', inputs: { corpus: { default: '/tmp' } } });
    expect(variant.def.inputs?.extra).toEqual({ type: 'directory', optional: true, description: 'extra words' });
  });

  it('refuses a pairing with an unknown input, or without the defaults it pairs', () => {
    const decl = (extra: Record<string, unknown>, corpusDefault: string | null = '../fixtures/smallcorpus') => () =>
      definePipeline({
        name: 'badPair',
        inputs: { corpus: { type: 'directory', ...(corpusDefault === null ? {} : { default: corpusDefault }) }, extra: { type: 'directory', optional: true, ...extra } },
        stages: [stage({ id: 'words', kind: countWords, inputs: { corpus: 'corpus' } })],
      });
    expectError(decl({ default: '.', pairedWith: 'corpse' }), PipelineValidationError, 'pipeline input "extra" is paired with "corpse"', 'corpus');
    expectError(decl({ pairedWith: 'corpus' }), PipelineValidationError, 'has no default');
    expectError(decl({ default: '.', pairedWith: 'corpus' }, null), PipelineValidationError, '"corpus", which has no default');
    expectError(decl({ default: '.', pairedWith: 'corpus', optinal: true }), PipelineValidationError, 'pipeline input "extra"', 'optinal');
  });
});
