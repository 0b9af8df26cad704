import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildDataset } from '../../activities/buildDataset.ts';
import { StageParamsError } from '../../core/errors.ts';
import { mineNegatives } from '../../activities/mineNegatives.ts';
import { stringColumn, stringListColumn } from '../../activities/evaluation/tables.ts';
import { readParquet } from '../../artifacts/parquet.ts';
import type { LocalStore } from '../../artifacts/store.ts';
import { buildPlan } from '../../dsl/dsl.ts';
import { loadPipeline } from '../../dsl/load.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { baseModel } from '../eval/fixtures.ts';
import { PYTHON } from '../embedding/support.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { publishChunks, publishQueries } from './support.ts';
import { DATASET_CARD_FILE, DEV_FILE, TRAIN_FILE } from '../../activities/artifactKinds/datasetArtifact.ts';
import { NEGATIVES_FILE } from '../../activities/artifactKinds/hardNegativesArtifact.ts';

// A crafted corpus: the positive of the water-quality query exists twice more (the same paragraph
// in another document, and again with different spacing), plus a near-copy with one word changed.
const POSITIVE = '青葉川の水質は流域の十四地点で毎月一回測定している。測定項目は水温、pH、溶存酸素など七項目である。';
const topics = [
  '上流域の四地点では、すべての項目で環境基準を満たした。山林の保全協定が結ばれている区域では浮遊物質量が特に低い。',
  '中流域では七月と八月に溶存酸素が一リットルあたり五ミリグラムを下回る日があった。',
  '下流域では全窒素の濃度が高い傾向にある。農地からの肥料の流出が主な原因である。',
  '河口の干潟では二〇二四年度に渡り鳥四十二種を確認した。シギ類の飛来数は前年より増えた。',
  'アユの遡上数は魚道の改修後に三割増えた。改修は二〇二二年に完了した。',
  '流域の年間降水量は平年並みで、梅雨の時期に全体の四割が集中した。',
  '洪水に備え、市は河川沿いの十一か所に水位計を設置し、インターネットで公開している。',
  '避難訓練には住民千二百人が参加した。高齢者の避難を支援する名簿の整備が課題である。',
  '農業用水の取水量は前年より五パーセント減った。節水型のかんがい設備が普及したためである。',
  '市民による清掃活動は年四回行われ、延べ三千人が参加した。回収したごみの半分はプラスチックである。',
  'The river basin white paper is published every year and summarises water quality, ecology and flood control.',
  'Volunteers collected three tonnes of litter along the riverbanks; half of it was plastic.',
];
const chunks = [
  { id: 'c-pos', text: POSITIVE },
  { id: 'c-dup', text: POSITIVE },
  { id: 'c-dup-spaced', text: POSITIVE.replace('。', '。 ').replace('、', '、 ') },
  { id: 'c-near', text: POSITIVE.replace('十四地点', '十四か所') },
  ...topics.map((text, i) => ({ id: `c${i}`, text })),
];
const queries = [
  { id: 'q-pos', chunk: 'c-pos', text: '青葉川の水質は何地点で測定しているか' },
  { id: 'q-pos-2', chunk: 'c-pos', text: '水質の測定項目はいくつあるか' },
  ...topics.flatMap((t, i) => [
    { id: `q${i}a`, chunk: `c${i}`, text: `${t.slice(0, 12)}について教えて` },
    { id: `q${i}b`, chunk: `c${i}`, text: t.slice(4, 22) },
  ]),
];
const POSITIVES = new Set(['c-pos', 'c-dup', 'c-dup-spaced']);

let store: LocalStore;
let model: string;
let chunksDigest: string;
let queriesDigest: string;

beforeAll(async () => {
  store = await tempStore();
  model = await baseModel(store);
  chunksDigest = await publishChunks(store, chunks);
  queriesDigest = await publishQueries(store, queries);
});

async function mined(params: Record<string, unknown> = {}) {
  const r = await runStage(mineNegatives, { store, params, inputs: { model, chunks: chunksDigest, queries: queriesDigest } });
  const path = (await store.open(r.digest)).file(NEGATIVES_FILE);
  const t = await readParquet(path);
  return { ...r, queryIds: stringColumn(t, 'query_id', path), negatives: stringListColumn(t, 'negative_ids', path) };
}

describe('mineNegatives stage', () => {
  it('never takes the positive or a duplicate of it as a negative; the guard removes the near-copy', async () => {
    const r = await mined({ numNegatives: 3 });
    const forPositive = r.queryIds.flatMap((q, i) => (q.startsWith('q-pos') ? [r.negatives[i]!] : []));
    expect(forPositive).toHaveLength(2);
    for (const negs of forPositive) {
      expect(negs).toHaveLength(3);
      for (const n of negs) expect(POSITIVES.has(n)).toBe(false);
      expect(negs).not.toContain('c-near');
    }
    // No query's own chunk among its negatives, anywhere.
    r.queryIds.forEach((q, i) => expect(r.negatives[i]).not.toContain(queries.find((x) => x.id === q)!.chunk));
    const m = r.manifest.meta.mining as Record<string, number>;
    expect(m.removedDuplicates).toBeGreaterThanOrEqual(4); // c-dup and c-dup-spaced, for both q-pos rows
    expect(m.removedByMargin).toBeGreaterThanOrEqual(2);
    // The duplicate text is embedded once; every query got into the output (short ones with fewer negatives).
    expect(r.stats).toMatchObject({ queries: queries.length, embeddingsComputed: chunks.length - 1 + queries.length });
    expect(Number(r.stats.queriesComplete) + Number(r.stats.queriesShort)).toBe(queries.length);
    expect(r.queryIds).toHaveLength(queries.length);
  });

  it('without the guard (relativeMargin null) the near-copy is mined: the guard is what keeps it out', async () => {
    const r = await mined({ numNegatives: 3, relativeMargin: null });
    const first = r.negatives[r.queryIds.indexOf('q-pos')]!;
    expect(first).toContain('c-near');
    // Every text was embedded by the first run: this one asks the model for nothing.
    expect(r.stats).toMatchObject({ embeddingsComputed: 0 });
  });
});

describe('mining parameter names', () => {
  it("an old name is refused when the plan is built, naming sentence-transformers' name and the conversion", async () => {
    const pipeline = await loadPipeline(join(PROJECT_ROOT, 'pipelines', 'domain-embedding.ts'));
    const plan = (path: string, value: unknown) =>
      buildPlan(pipeline, { taskQueues: { workflow: 'q', cpu: 'q-cpu', gpu: 'q-gpu' }, overrides: [{ path, value }] });
    await expect(plan('negatives.margin', 0.95)).rejects.toThrow(StageParamsError);
    await expect(plan('negatives.margin', 0.95)).rejects.toThrow(/params\.margin: renamed to relativeMargin.*margin 0\.95 is relativeMargin 0\.05/);
    await expect(plan('negatives.sampling', 'random')).rejects.toThrow(/params\.sampling: renamed to samplingStrategy/);
    // The new names plan.
    await expect(plan('negatives.samplingStrategy', 'random')).resolves.toBeDefined();
  });
});

describe('buildDataset stage', () => {
  it('writes anchor/positive/negative_1..k with ids, splits by chunk, and trains one step with sentence-transformers', async () => {
    const m = await mined({ numNegatives: 2 });
    const negatives = m.digest;
    const complete = m.negatives.filter((n) => n.length === 2).length;
    const r = await runStage(buildDataset, {
      store,
      params: { devFraction: 0.3, seed: 7 },
      inputs: { queries: queriesDigest, chunks: chunksDigest, negatives },
    });
    const dir = (await store.open(r.digest)).dir;
    const train = await readParquet(join(dir, TRAIN_FILE));
    const dev = await readParquet(join(dir, DEV_FILE));
    expect(train.schema.fields.map((f) => f.name)).toEqual(['anchor', 'positive', 'negative_1', 'negative_2', 'query_id', 'chunk_id', 'negative_ids']);
    // Rows whose mining found fewer than 2 negatives are dropped, and the card says so.
    expect(train.numRows + dev.numRows).toBe(complete);
    expect(r.stats.dropped).toBe(queries.length - complete);
    expect(dev.numRows).toBeGreaterThan(0);

    // Grouped by chunk: no chunk on both sides, and every query of a chunk on its chunk's side.
    const trainChunks = new Set(stringColumn(train, 'chunk_id', 'train'));
    const devChunks = new Set(stringColumn(dev, 'chunk_id', 'dev'));
    for (const c of devChunks) expect(trainChunks.has(c)).toBe(false);
    const kept = new Set([...stringColumn(train, 'query_id', 'train'), ...stringColumn(dev, 'query_id', 'dev')]);
    for (const q of queries.filter((x) => kept.has(x.id))) {
      const side = trainChunks.has(q.chunk) ? train : dev;
      expect(stringColumn(side, 'query_id', 'side')).toContain(q.id);
    }
    const card = await readFile(join(dir, DATASET_CARD_FILE), 'utf8');
    expect(card).toContain(`| rows | ${train.numRows} | ${dev.numRows} |`);
    expect(card).toMatch(/removed by the margin guard .*: \d+/);
    expect(card).toMatch(/anchors: train ja \d+/);
    expect(card).toContain(`fewer negatives than numNegatives: ${queries.length - complete}`);

    // The project's Python environment loads it (pyarrow → datasets.Dataset) and trains on it.
    const out = await mkdtemp(join(tmpdir(), 'ef-ds-train-'));
    const { stdout } = await promisify(execFile)(
      PYTHON,
      [
        join(PROJECT_ROOT, 'trainer', 'train.py'),
        '--model', join((await store.open(model)).dir, 'st'),
        '--train', join(dir, TRAIN_FILE),
        '--output-dir', out,
        '--max-steps', '1', '--batch-size', '4', '--max-seq-length', '64', '--no-evaluate', '--save-steps', '100',
      ],
      { maxBuffer: 1 << 24 },
    );
    const done = stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; step?: number; trainLoss?: number }).find((l) => l.type === 'done');
    expect(done?.step).toBe(1);
    expect(Number.isFinite(done?.trainLoss)).toBe(true);
  });
});
