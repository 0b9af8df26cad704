import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { LocalStore } from '../../artifacts/store.ts';
import { buildDataset } from '../../activities/buildDataset.ts';
import { chunk } from '../../activities/chunk.ts';
import { evaluate } from '../../activities/evaluate.ts';
import { importQuestions } from '../../activities/importQuestions.ts';
import { mineNegatives } from '../../activities/mineNegatives.ts';
import { report } from '../../activities/report.ts';
import { train } from '../../activities/train.ts';
import { trainReranker } from '../../activities/trainReranker.ts';
import { filesArtifact, runStage, tempStore } from '../support/runStage.ts';
import { renderInChromium } from './chromium.ts';
import { EXAMPLES, baseModel, ingestDir, sentenceQueries } from './fixtures.ts';
import { readMetrics } from '../../activities/artifactKinds/evaluationArtifact.ts';

const EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">';

let store: LocalStore;
let withEverything: string;
let baseOnly: string;
let finetuned: string;
let evaluation: { digest: string; stats: Record<string, unknown> };
/** The fine-tuned model's loss per step, as the train stage recorded it. */
let lossCurve: Array<{ step: number; loss: number }>;

beforeAll(async () => {
  store = await tempStore('ef-eval-report-');
  // The example corpus plus a document (and a question) carrying markup that must never run.
  const corpusDir = await mkdtemp(join(tmpdir(), 'ef-report-corpus-'));
  await cp(join(EXAMPLES, 'corpus'), corpusDir, { recursive: true });
  const evilDoc = `# 注意\n\n青葉川の観測所は${EVIL}の横にある。水位計は三台ある。\n`;
  await writeFile(join(corpusDir, '99-evil.md'), evilDoc);
  const start = evilDoc.indexOf('水位計');
  // First in the file, so it is in the report's sample of the set whatever the models rank.
  const evilQuestion = JSON.stringify({ id: 'evil', question: `${EVIL}水位計は何台?`, doc: '99-evil.md', start, end: start + 6 });
  const questionsPath = join(corpusDir, '..', `q-${Date.now()}.jsonl`);
  await writeFile(questionsPath, `${evilQuestion}\n${await readFile(join(EXAMPLES, 'questions.jsonl'), 'utf8')}`);

  const model = await baseModel(store);
  const documents = await ingestDir(store, corpusDir);
  const chunks = (await runStage(chunk, { store, params: { maxTokens: 96, overlap: 16 }, inputs: { documents } })).digest;
  const evalQueries = await sentenceQueries(store, chunks, 40);
  const questions = await filesArtifact(store, questionsPath, 'file');
  const evalQuestions = (await runStage(importQuestions, { store, inputs: { questions, documents, chunks } })).digest;
  // Training data the way the pipeline makes it, so the report can chart the mined scores and the funnel.
  const queries = await sentenceQueries(store, chunks, 40, 'queries');
  const negatives = (await runStage(mineNegatives, { store, params: { numNegatives: 2 }, inputs: { model, chunks, queries } })).digest;
  const dataset = (await runStage(buildDataset, { store, params: { devFraction: 0.2 }, inputs: { queries, chunks, negatives } })).digest;
  // Training gone wrong, with the real stages: a reranker whose scoring head learnt nothing (it
  // shuffles base's top N), and a fine-tuning at a learning rate a thousand times too high (it wrecks
  // the model). Neither may be reported as a result or as a baseline the fine-tuned model beats.
  const reranker = (
    await runStage(trainReranker, { store, params: { maxSteps: 3, batchQueries: 4, negatives: 2, maxLength: 96, lr: 1e-12 }, inputs: { model, dataset } })
  ).digest;
  // Real (if short): the report draws the loss and dev curves the train stage keeps in its manifest.
  const trained = await runStage(train, {
    store,
    params: { maxSteps: 4, batchSize: 4, maxSeqLength: 64, cpuThreads: 1, logEvery: 1, warmupRatio: 0, learningRate: 0.02, evalEvery: 2 },
    inputs: { model, dataset },
  });
  finetuned = trained.digest;
  lossCurve = z.array(z.object({ step: z.number(), loss: z.number() })).parse(trained.manifest.meta['lossCurve']);

  evaluation = await runStage(evaluate, {
    store,
    params: { bootstrapSamples: 200, rerankDepths: [5, 10] },
    inputs: { base: model, finetuned, chunks, evalQueries, evalQuestions, reranker },
  });
  withEverything = (await runStage(report, { store, inputs: { evaluation: evaluation.digest } })).digest;
  const ev2 = await runStage(evaluate, { store, params: { bootstrapSamples: 200 }, inputs: { base: model, chunks, evalQuestions } });
  baseOnly = (await runStage(report, { store, inputs: { evaluation: ev2.digest } })).digest;
}, 600_000);

function renderReport(digest: string, screenshot: string) {
  return renderInChromium(store, digest, screenshot, (page) =>
    page.evaluate(() => ({
      pwned: (window as unknown as { __pwned?: number }).__pwned,
      scripts: document.querySelectorAll('script').length,
      imgs: document.querySelectorAll('img').length,
      svgs: document.querySelectorAll('svg').length,
      text: document.body.innerText,
      trainingCharts: Array.from(document.querySelectorAll('svg[aria-label^="Training loss"]')).map((svg) => ({
        title: svg.getAttribute('aria-label') ?? '',
        points: svg.querySelectorAll('circle').length,
      })),
      lineage: Array.from(document.querySelectorAll<HTMLTableRowElement>('table.lineage tr')).map((tr) => Array.from(tr.cells).map((c) => c.innerText)),
    })),
  );
}

describe('report', () => {
  it('renders in headless Chromium without console errors, network or executed document markup', async () => {
    const { problems, requests, state, htmlPath } = await renderReport(withEverything, 'report.png');
    expect(problems).toEqual([]);
    expect(requests).toEqual([pathToFileURL(htmlPath).href]);
    expect(state.pwned).toBeUndefined();
    expect(state.scripts).toBe(0);
    expect(state.imgs).toBe(0);
    // The markup is shown as text: in the examples (query) and wherever chunk text appears.
    expect(state.text).toContain('<script>window.__pwned = 1</script>');
    // Summary table, recall curves, CI bars (per eval set), latency and the training curve.
    expect(state.svgs).toBeGreaterThanOrEqual(6);
    for (const s of ['finetuned', 'base+rerank@10', 'Accuracy@k', 'Per-query latency', 'Lineage', 'p95']) {
      expect(state.text).toContain(s);
    }
  });

  it('draws the training curves the train and reranker stages recorded, one point per logged step', async () => {
    const { state } = await renderReport(withEverything, 'report.png');
    expect(lossCurve.map((p) => p.step)).toEqual([1, 2, 3, 4]);
    expect(state.trainingCharts).toEqual([
      { title: 'Training loss — fine-tuned model (all-MiniLM-L6-v2-ft)', points: lossCurve.length },
      { title: expect.stringMatching(/^Training loss — reranker \(/), points: 3 },
    ]);
    expect(state.text).not.toContain('No training curve');
  });

  it("lineage names each artifact's producing stage with its parameters", async () => {
    const { state } = await renderReport(withEverything, 'report.png');
    const [head, ...rows] = state.lineage;
    expect(head).toEqual(['stage', 'artifact', 'digest', 'rows', 'params', 'stats', 'inputs']);
    const column = (name: string) => head!.indexOf(name);
    const model = rows.find((r) => r[column('digest')] === finetuned.slice(0, 12));
    expect(model?.[column('params')]).toMatch(/(^|, )maxSteps=4(,|$)/);
    expect(model?.[column('params')]).toContain('loss=mnrl');
    const chunks = rows.find((r) => r[column('artifact')] === 'chunks');
    expect(chunks?.[column('params')]).toMatch(/maxTokens=96, overlap=16/);
  });

  it('keeps metrics.json as the evaluation wrote it and writes a short Markdown summary', async () => {
    const art = await store.open(withEverything);
    expect(art.manifest.kind).toBe('report');
    const m = await readMetrics(art);
    expect(Object.keys(m.human!)).toEqual(expect.arrayContaining(['base', 'finetuned', 'base+rerank@5', 'base+rerank@10', 'finetuned+rerank@10']));
    const md = await readFile(art.file('summary.md'), 'utf8');
    expect(md).toMatch(/## human-written questions \(88 queries\)/);
    expect(md).toMatch(/Fine-tuned vs base: ndcg@10 [+−]\d+\.\d\d pts \(95% CI .+\) — (a real gain|a real loss|not distinguishable from noise)\./);
    expect(md).toMatch(/\| base\+rerank@10 \| \d\.\d{3} \(/);
    expect(md).toMatch(/Latency per query \(p50 \/ p95 \/ p99\): base embed\+search/);
    expect(md.split('\n').length).toBeLessThan(50);
  });

  it('a report without a fine-tuned model says so instead of drawing a training curve', async () => {
    const { problems, state } = await renderReport(baseOnly, 'report-base-only.png');
    expect(problems).toEqual([]);
    expect(state.text).toContain('No training curve for: no fine-tuned model was evaluated');
    expect(state.text).toContain('the numbers below are the baseline');
  });
});

describe('verdicts', () => {
  const summary = async () => readFile((await store.open(withEverything)).file('summary.md'), 'utf8');
  const metricsOf = async () => readMetrics(await store.open(withEverything));

  it('a fine-tuned model worse than its base is called worse in metrics.json, the stage stats and summary.md', async () => {
    const m = await metricsOf();
    const cmp = m.pairedTests.generated!.find((c) => c.a === 'base' && c.b === 'finetuned')!;
    expect(cmp.metrics['accuracy@1'].diff.hi).toBeLessThan(0);
    expect(m.verdict).toMatchObject({ overall: 'worse', finetuned: { generated: 'worse' } });
    // `embedflow status` shows a stage's first stats; `run --json` carries them all.
    expect(Object.entries(evaluation.stats).slice(0, 2)).toEqual([
      ['verdict', 'worse'],
      ['verdict.generated', 'worse'],
    ]);
    const md = await summary();
    expect(md).toContain('**Verdict: the fine-tuned model is WORSE than its base.**');
    const generated = md.slice(md.indexOf('## generated eval queries'), md.indexOf('## human-written questions'));
    expect(generated).toMatch(/Fine-tuned vs base: ndcg@10 −.* — a real loss\. accuracy@1 −/);
    expect(m.verdict!.notes[0]).toMatchObject({ severity: 'bad', text: expect.stringMatching(/^Fine-tuned is WORSE than base on the generated eval queries: accuracy@1 −/) });
  });

  it("a reranker that lowers its first stage's recall is flagged, not declared beaten", async () => {
    const m = await metricsOf();
    const g = m.generated!;
    expect(g['base+rerank@10']!['accuracy@1'].value).toBeLessThan(g['base']!['accuracy@1'].value);
    expect(m.verdict!.baselines.generated).toMatchObject({ 'base+rerank@10': 'harms its first stage' });
    expect(evaluation.stats['baseline.generated.base+rerank@10']).toBe('harms its first stage');
    const md = await summary();
    expect(md).toMatch(/- \*\*base\+rerank@10: this reranker makes base worse on the generated eval queries \(accuracy@1 \d\.\d+ → \d\.\d+\): not a meaningful comparison/);
    const generated = md.slice(md.indexOf('## generated eval queries'), md.indexOf('## human-written questions'));
    expect(generated).not.toContain('Fine-tuned vs base+rerank@10');
  });

  it('the report shows both in red, with the charts the verdict rests on', async () => {
    const { problems, state } = await renderInChromium(store, withEverything, 'report.png', (page) =>
      page.evaluate(() => ({
        text: document.body.innerText,
        headline: (() => {
          const el = document.querySelector('.headline');
          return el ? { text: el.textContent, background: getComputedStyle(el).backgroundColor } : null;
        })(),
        flagged: Array.from(document.querySelectorAll<HTMLElement>('tr.flag td:first-child')).map((td) => td.innerText),
        charts: Array.from(document.querySelectorAll('svg')).map((svg) => svg.getAttribute('aria-label')),
        redWhiskers: document.querySelectorAll('svg[aria-label^="Fine-tuned minus"] line[stroke="#dc2626"]').length,
        devPoints: document.querySelectorAll('svg[aria-label^="Dev split"] circle').length,
        histogramBars: document.querySelectorAll('svg[aria-label^="Mined similarity"] rect').length,
      })),
    );
    expect(problems).toEqual([]);
    expect(state.headline).toEqual({ text: expect.stringContaining('WORSE than its base'), background: 'rgb(220, 38, 38)' });
    expect(state.flagged).toEqual(expect.arrayContaining([expect.stringMatching(/^base\+rerank@10[\s\S]*not a meaningful baseline/)]));
    expect(state.text).toContain('this reranker makes base worse');
    expect(state.text).not.toContain('fine-tuned alone is better than base reranked');
    expect(state.charts).toEqual(
      expect.arrayContaining([
        'Fine-tuned minus each system — generated eval queries',
        'Fine-tuned minus each system — human-written questions',
        'Dev split over training steps (fine-tuned model)',
        'From chunks to training rows',
        'Mined similarity scores — mineNegatives',
      ]),
    );
    expect(state.histogramBars).toBeGreaterThan(2);
    expect(state.redWhiskers).toBeGreaterThan(0);
    // Evaluated at steps 2 and 4 (every 2 of 4 steps), per dev metric drawn.
    expect(state.devPoints).toBeGreaterThanOrEqual(4);
    expect(state.text).toContain('Fine-tuned loses');
  });
});
