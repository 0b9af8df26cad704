import { cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { exists } from '../../artifacts/fsutil.ts';
import type { LocalStore } from '../../artifacts/store.ts';
import { chunk } from '../../activities/chunk.ts';
import { evaluate } from '../../activities/evaluate.ts';
import { MetricsJson } from '../../activities/evaluation/metricsJson.ts';
import { importQuestions } from '../../activities/importQuestions.ts';
import { report } from '../../activities/report.ts';
import { train } from '../../activities/train.ts';
import { trainReranker } from '../../activities/trainReranker.ts';
import { filesArtifact, runStage, tempStore } from '../support/runStage.ts';
import { EXAMPLES, OUTPUT, baseModel, ingestDir, sentenceDataset, sentenceQueries } from './fixtures.ts';

const CHROMIUM = process.env['EMBEDFLOW_CHROMIUM'] ?? '/usr/bin/chromium';
const EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">';

let store: LocalStore;
let withEverything: string;
let baseOnly: string;
let finetuned: string;
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
  const evalQueries = await sentenceQueries(store, chunks, 25);
  const questions = await filesArtifact(store, questionsPath, 'file');
  const evalQuestions = (await runStage(importQuestions, { store, inputs: { questions, documents, chunks } })).digest;
  const dataset = await sentenceDataset(store, chunks, 2);
  const reranker = (
    await runStage(trainReranker, { store, params: { maxSteps: 3, batchQueries: 4, negatives: 2, maxLength: 96 }, inputs: { model, dataset } })
  ).digest;
  // A real (if short) fine-tuning: the report draws the loss curve the train stage keeps in its manifest.
  const trained = await runStage(train, {
    store,
    params: { maxSteps: 4, batchSize: 4, maxSeqLength: 64, cpuThreads: 1, logEvery: 1, warmupRatio: 0, evaluate: false },
    inputs: { model, dataset },
  });
  finetuned = trained.digest;
  lossCurve = z.array(z.object({ step: z.number(), loss: z.number() })).parse(trained.manifest.meta['lossCurve']);

  const ev = await runStage(evaluate, {
    store,
    params: { bootstrapSamples: 200, rerankDepths: [5, 10], rerankMaxQueries: 10 },
    inputs: { base: model, finetuned, chunks, evalQueries, evalQuestions, reranker },
  });
  withEverything = (await runStage(report, { store, inputs: { evaluation: ev.digest } })).digest;
  const ev2 = await runStage(evaluate, { store, params: { bootstrapSamples: 200 }, inputs: { base: model, chunks, evalQuestions } });
  baseOnly = (await runStage(report, { store, inputs: { evaluation: ev2.digest } })).digest;
}, 600_000);

async function renderInChromium(digest: string, screenshot: string) {
  if (!(await exists(CHROMIUM))) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: run scripts/install-chromium.sh (or set EMBEDFLOW_CHROMIUM)`);
  }
  const htmlPath = (await store.open(digest)).file('report.html');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${msg.type()}: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('request', (req) => requests.push(req.url()));
    await page.goto(pathToFileURL(htmlPath).href, { waitUntil: 'load' });
    await mkdir(OUTPUT, { recursive: true });
    await page.screenshot({ path: join(OUTPUT, screenshot), fullPage: true });
    const state = await page.evaluate(() => ({
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
    }));
    return { problems, requests, state, htmlPath };
  } finally {
    await browser.close();
  }
}

describe('report', () => {
  it('renders in headless Chromium without console errors, network or executed document markup', async () => {
    const { problems, requests, state, htmlPath } = await renderInChromium(withEverything, 'report.png');
    expect(problems).toEqual([]);
    expect(requests).toEqual([pathToFileURL(htmlPath).href]);
    expect(state.pwned).toBeUndefined();
    expect(state.scripts).toBe(0);
    expect(state.imgs).toBe(0);
    // The markup is shown as text: in the examples (query) and wherever chunk text appears.
    expect(state.text).toContain('<script>window.__pwned = 1</script>');
    // Summary table, recall curves, CI bars (per eval set), latency and the training curve.
    expect(state.svgs).toBeGreaterThanOrEqual(6);
    for (const s of ['finetuned', 'base+rerank@10', 'Recall@k', 'Per-query latency', 'Lineage', 'p95']) {
      expect(state.text).toContain(s);
    }
  });

  it('draws the training curves the train and reranker stages recorded, one point per logged step', async () => {
    const { state } = await renderInChromium(withEverything, 'report.png');
    expect(lossCurve.map((p) => p.step)).toEqual([1, 2, 3, 4]);
    expect(state.trainingCharts).toEqual([
      { title: 'Training loss — fine-tuned model (all-MiniLM-L6-v2-ft)', points: lossCurve.length },
      { title: expect.stringMatching(/^Training loss — reranker \(/), points: 3 },
    ]);
    expect(state.text).not.toContain('No training curve');
  });

  it("lineage names each artifact's producing stage with its parameters", async () => {
    const { state } = await renderInChromium(withEverything, 'report.png');
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
    const m = MetricsJson.parse(JSON.parse(await readFile(art.file('metrics.json'), 'utf8')));
    expect(Object.keys(m.human!)).toEqual(expect.arrayContaining(['base', 'finetuned', 'base+rerank@5', 'base+rerank@10', 'finetuned+rerank@10']));
    const md = await readFile(art.file('summary.md'), 'utf8');
    expect(md).toMatch(/## human-written questions \(88 queries\)/);
    expect(md).toMatch(/Fine-tuned vs base: ndcg@10 [+−]\d+\.\d\d pts \(95% CI .+\) — (a real gain|a real loss|not distinguishable from noise)\./);
    expect(md).toMatch(/\| base\+rerank@10 \| \d\.\d{3} \(/);
    expect(md).toMatch(/Latency per query \(p50 \/ p95 \/ p99\): base embed\+search/);
    expect(md.split('\n').length).toBeLessThan(40);
  });

  it('a report without a fine-tuned model says so instead of drawing a training curve', async () => {
    const { problems, state } = await renderInChromium(baseOnly, 'report-base-only.png');
    expect(problems).toEqual([]);
    expect(state.text).toContain('No training curve for: no fine-tuned model was evaluated');
    expect(state.text).toContain('the numbers below are the baseline');
  });
});
