import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type TrainParams, train } from '../../activities/train.ts';
import type { ArtifactReader, LocalStore } from '../../artifacts/store.ts';
import { buildPlan } from '../../dsl/dsl.ts';
import { SharedBudget } from '../../engine/sharedBudget.ts';
import { loadPipeline } from '../../dsl/load.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { cli, testEnv } from '../support/cli.ts';
import { tempStore } from '../support/runStage.ts';
import { PYTHON, modelArtifact } from '../train/support.ts';
import { MODEL_INFO_FILE } from '../../activities/artifactKinds/modelArtifact.ts';

// A worker admits a stage only when its declared CPU and memory fit: two CPU-heavy stages on a 2-core
// worker run one after the other, a light stage runs beside them, and a stage bigger than the whole
// memory budget still runs, alone.

const PIPELINE = 'test/fixtures/pipelines/budget.ts';

type Span = { start: number; end: number };
const overlap = (a: Span, b: Span) => a.start < b.end && b.start < a.end;

describe('worker resource budget', () => {
  it('two heavy stages on 2 cores do not overlap; a light one runs beside them; a too-big one runs alone', async () => {
    const base = await testEnv();
    // The flags win over the environment, which alone would let everything run at once.
    const env = { ...base, EMBEDFLOW_TEST_LOG: join(base.EMBEDFLOW_STORE, 'spans.log'), EMBEDFLOW_WORKER_CPUS: '64', EMBEDFLOW_WORKER_MEMORY: '1024GiB' };
    const r = await cli(['run', PIPELINE, '--json', '--cpus', '2', '--memory', '1GiB'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.stages.map((s: { status: string }) => s.status)).toEqual(['ran', 'ran', 'ran', 'ran']);
    // The user is told why the big one ran by itself (in its stats, shown with the stage in `status`
    // and the summary; a heartbeat saying so can be overtaken by the stage's end), and what the budget assumed.
    const hugeStage = r.json.stages.find((s: { id: string }) => s.id === 'huge');
    expect(hugeStage.stats).toMatchObject({ estimatedPeakMB: 4096, ranAlone: expect.stringMatching(/needs about 4\.0 GiB, more than the 1\.0 GiB/) });
    // Every stage's stats carry the worker's measured peak, its child processes included: the big
    // one's child held 400 MiB, which the heavy ones did not see (it ran without them).
    const peak = (id: string) => r.json.stages.find((s: { id: string }) => s.id === id).stats.workerPeakRssMB as number;
    for (const id of ['heavyA', 'heavyB']) expect(peak('huge') - peak(id), id).toBeGreaterThan(350);

    const spans: Record<string, Span> = {};
    for (const line of (await readFile(env.EMBEDFLOW_TEST_LOG, 'utf8')).trim().split('\n')) {
      const [id, what, at] = line.split(' ');
      spans[id!] = { ...spans[id!], [what as 'start' | 'end']: Number(at) } as Span;
    }
    const { heavyA, heavyB, light, huge } = spans as Record<string, Span>;
    expect(overlap(heavyA!, heavyB!), JSON.stringify(spans)).toBe(false);
    expect(overlap(huge!, heavyA!) || overlap(huge!, heavyB!), JSON.stringify(spans)).toBe(false);
    expect(overlap(light!, heavyA!) || overlap(light!, heavyB!) || overlap(light!, huge!), JSON.stringify(spans)).toBe(true);
  });

  it("workers of one home share its machine: two runs started at once never run heavy stages side by side", async () => {
    // Two CLIs, each with its embedded worker, as a scheduler starts them; their own stores and logs,
    // one home's budget folder (each would otherwise think both cores its own).
    const [a, b] = await Promise.all([testEnv(), testEnv()]);
    const budgetDir = a.EMBEDFLOW_BUDGET_DIR!;
    const logs = [join(a.EMBEDFLOW_STORE, 'spans.log'), join(b.EMBEDFLOW_STORE, 'spans.log')];
    const runs = await Promise.all(
      [a, b].map((env, i) => cli(['run', PIPELINE, '--json', '--cpus', '2'], { ...env, EMBEDFLOW_BUDGET_DIR: budgetDir, EMBEDFLOW_TEST_LOG: logs[i]! })),
    );
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const heavy: Array<Span & { id: string }> = [];
    for (const [i, log] of logs.entries()) {
      const spans: Record<string, Span> = {};
      for (const line of (await readFile(log, 'utf8')).trim().split('\n')) {
        const [id, what, at] = line.split(' ');
        spans[id!] = { ...spans[id!], [what as 'start' | 'end']: Number(at) } as Span;
      }
      for (const id of ['heavyA', 'heavyB']) heavy.push({ id: `run${i + 1}.${id}`, ...spans[id]! });
    }
    for (const x of heavy) for (const y of heavy) if (x !== y) expect(overlap(x, y), `${x.id} and ${y.id}: ${JSON.stringify(heavy)}`).toBe(false);
  });

  it("a killed worker's claim and lock do not hold the machine", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ef-budget-dead-'));
    const dead = spawnSync(process.execPath, ['-e', 'process.pid']).pid!;
    await mkdir(join(dir, 'claims'));
    await writeFile(join(dir, 'claims', `${dead}-1-0.json`), JSON.stringify({ pid: dead, stage: 'r/model', cores: 2, memoryBytes: 2 ** 33, alone: true }));
    await writeFile(join(dir, 'lock'), JSON.stringify({ pid: dead }));
    const budget = new SharedBudget(dir, { cpus: 2, memoryBytes: 2 ** 34 });
    const waited: string[] = [];
    const t0 = Date.now();
    const release = await budget.admit({ cores: 2, memoryBytes: 2 ** 33, alone: false }, 'r2/model', new AbortController().signal, (m) => waited.push(m));
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(waited).toEqual([]);
    // A live claim does hold it: the next one waits, and says who holds what.
    const next = budget.admit({ cores: 1, memoryBytes: 0, alone: false }, 'r3/embed', AbortSignal.timeout(1500), (m) => waited.push(m));
    await expect(next).rejects.toThrow();
    expect(waited[0]).toMatch(/1 stage\(s\) .* hold 2 core\(s\) and 8\.0 GiB \(r2\/model\)/);
    release();
    (await budget.admit({ cores: 1, memoryBytes: 0, alone: false }, 'r3/embed', new AbortController().signal, () => {}))();
  });

  it('first come, first served across workers: a stage waits while one that asked earlier still waits', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ef-budget-fifo-'));
    const budget = new SharedBudget(dir, { cpus: 2, memoryBytes: 2 ** 34 });
    // A live worker (this process) asked before, for more than is free now; the machine itself is empty.
    await mkdir(join(dir, 'waits'), { recursive: true });
    const earlier = join(dir, 'waits', `${String(Date.now() - 60_000).padStart(15, '0')}-${process.pid}-99.json`);
    await writeFile(earlier, JSON.stringify({ pid: process.pid, stage: 'r1/model', cores: 2, memoryBytes: 0, alone: false }));
    let told = '';
    let granted = false;
    const later = budget.admit({ cores: 1, memoryBytes: 0, alone: false }, 'r2/embed', new AbortController().signal, (m) => (told = m)).then((release) => {
      granted = true;
      return release;
    });
    await new Promise((r) => setTimeout(r, 1500));
    expect(granted).toBe(false);
    expect(told).toMatch(/r1\/model \(waiting\)/);
    await rm(earlier);
    (await later)();
    expect(granted).toBe(true);
  });

  it('a malformed EMBEDFLOW_WORKER_MEMORY is a ConfigError naming it', async () => {
    const r = await cli(['run', PIPELINE, '--json'], { ...(await testEnv()), EMBEDFLOW_WORKER_MEMORY: 'lots' });
    expect(r.code).toBe(1);
    expect(r.json?.status ?? 'failed').toBe('failed');
    expect(r.stderr + r.stdout).toMatch(/EMBEDFLOW_WORKER_MEMORY/);
  });

  it('--cpus 0, --cpus lots and --memory -1GiB are one-line usage errors (exit 2) naming the flag, with an example', async () => {
    const env = await testEnv();
    for (const [flag, value, example] of [
      ['--cpus', '0', '--cpus 2'],
      ['--cpus', 'lots', '--cpus 2'],
      ['--memory', '-1GiB', '--memory 16GiB'],
    ] as const) {
      const r = await cli(['run', PIPELINE, `${flag}=${value}`], env);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(`${flag} <`);
      expect(r.stderr).toContain(`e.g. ${example}`);
    }
  });
});

// multilingual-e5-small's network, as st/config.json of the recipe's base model artifact holds it.
const E5_SMALL_CONFIG = { architectures: ['BertModel'], num_hidden_layers: 12, hidden_size: 384, num_attention_heads: 12, intermediate_size: 1536, vocab_size: 250037 };

describe("the train kind's memory estimate", () => {
  const env = { home: PROJECT_ROOT, python: PYTHON, projectRoot: PROJECT_ROOT, vars: {} };
  const open = async (store: LocalStore, kind: string, files: Record<string, unknown>, meta: Record<string, unknown> = {}) => {
    const w = await store.newWriter();
    for (const [path, json] of Object.entries(files)) await writeFile(await w.file(path), JSON.stringify(json));
    return store.open((await store.publish(w, { kind, meta })).digest);
  };
  type Inputs = Parameters<NonNullable<typeof train.resources>>[1];
  const needs = (p: TrainParams, model: ArtifactReader, dataset: ArtifactReader) => train.resources!(p, { model, dataset } as Inputs, env);

  it("e5 trained through every layer is estimated near its measured 7 GB, the recipe's top-2 fine-tune and a smaller batch lower; MiniLM near its measured 9.2 and 3.1 GB", async () => {
    const store = await tempStore('ef-budget-estimate-');
    const e5 = await open(store, 'model', { 'st/config.json': E5_SMALL_CONFIG, [MODEL_INFO_FILE]: { maxSeqLength: 512 } });
    // (Artifacts are content-addressed: each dataset its own file, or the second would be the first.)
    const dataset = await open(store, 'dataset', { 'train.json': ['three negatives'] }, { stats: { numNegatives: 3 } });
    const recipe = await buildPlan(await loadPipeline(join(PROJECT_ROOT, 'pipelines', 'domain-embedding.ts')), {
      taskQueues: { workflow: 'q', cpu: 'q-cpu', gpu: 'q-gpu' },
    });
    const params = train.params.parse(recipe.stages.find((s) => s.id === 'model')!.params);
    const estimate = async (p: Partial<typeof params>) => (await needs({ ...params, ...p }, e5, dataset)).memoryBytes!;

    const recipeBytes = await estimate({});
    expect(recipeBytes).toBeGreaterThan(3e9);
    expect(recipeBytes).toBeLessThan(10e9);
    // The bench's measured run, every layer trained with all three negatives: maxSeqLength 256, GradCache, 7,060 MB.
    const everyLayer = await estimate({ maxSeqLength: 256, trainLayers: 'all', numNegatives: undefined, freezeEmbeddings: true });
    expect(Math.abs(everyLayer - 7.06e9)).toBeLessThan(1.5e9);
    // The recipe trains the top 2 layers: no optimiser state below them, no graph of theirs.
    expect(recipeBytes).toBeLessThan(everyLayer);
    expect(await estimate({ batchSize: 4 })).toBeLessThan(recipeBytes);
    expect((await needs(params, e5, dataset)).cpu).toBe('heavy');

    // The real all-MiniLM-L6-v2 artifact, 32 rows × 3 texts × 256 tokens: 9.2 GB as plain MNRL, 3.1 GB as GradCache.
    const minilm = await store.open(await modelArtifact(store));
    const twoNegatives = await open(store, 'dataset', { 'train.json': ['one negative'] }, { stats: { numNegatives: 1 } });
    const miniLm = async (p: Partial<typeof params>) =>
      (await needs({ ...params, batchSize: 32, maxSeqLength: 256, freezeEmbeddings: false, trainLayers: 'all', ...p }, minilm, twoNegatives)).memoryBytes!;
    expect(Math.abs((await miniLm({ miniBatchSize: 32 })) - 9.2e9)).toBeLessThan(1.5e9);
    expect(Math.abs((await miniLm({})) - 3.1e9)).toBeLessThan(1e9);
  });
});
