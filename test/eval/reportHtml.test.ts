import { describe, expect, it } from 'vitest';
import { esc } from '../../activities/evaluation/html.ts';
import { METRIC_NAMES } from '../../activities/evaluation/metrics.ts';
import type { MetricTable, MetricsJson, PairedComparison } from '../../activities/evaluation/metricsJson.ts';
import { renderReportHtml } from '../../activities/evaluation/reportHtml.ts';
import type { ReportData } from '../../activities/evaluation/reportModel.ts';
import { renderSummaryMd } from '../../activities/evaluation/summaryMd.ts';
import { bestSystem, devCheckOf, judge, verdictStats } from '../../activities/evaluation/verdict.ts';

const EVIL = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'&';
const D = 'a'.repeat(64);
const table = (v: number) => Object.fromEntries(METRIC_NAMES.map((m) => [m, { value: v, lo: v - 0.05, hi: v + 0.05 }])) as MetricTable;
const diff = { diff: { value: 0.1, lo: 0.05, hi: 0.15 }, pValue: 0.001, significant: true };
const diffs = Object.fromEntries(METRIC_NAMES.map((m) => [m, diff])) as PairedComparison['metrics'];

const metrics: MetricsJson = {
  human: { base: table(0.4), finetuned: table(0.5), 'base+rerank@50': table(0.45) },
  pairedTests: {
    human: [
      { a: 'base', b: 'finetuned', n: 100, metrics: diffs },
      { a: 'base+rerank@50', b: 'finetuned', n: 50, metrics: diffs },
    ],
  },
  latency: { 'embed+search': { base: { n: 100, mean: 3, p50: 2.5, p95: 6, p99: 9, max: 12 } }, rerank: {} },
  gate: null,
  meta: {
    inputs: { base: D },
    models: { base: { name: EVIL, digest: D }, finetuned: { name: `ft${EVIL}`, digest: D } },
    corpus: { chunks: 10, documents: 2 },
    evalSets: { human: { queries: 100, reranked: 50, skipped: 0, relevantPerQuery: 1.2 } },
    bootstrap: { samples: 1000, seed: 42, alpha: 0.05 },
    throughput: { queries: 100, seconds: 2, queriesPerSecond: 50 },
    definitions: { [EVIL]: EVIL },
  },
};

const data: ReportData = {
  metrics,
  evaluation: { digest: D, createdAt: EVIL, runId: EVIL },
  curves: { human: { base: Array.from({ length: 100 }, (_, i) => Math.min(1, 0.4 + i / 200)), [EVIL]: [0.1, 0.2] } },
  training: [{ name: EVIL, points: [[1, 2], [2, 1]] }],
  trainingNote: EVIL,
  devCurves: [{ name: EVIL, points: [[2, 0.5], [4, 0.6]] }],
  verdict: judge(metrics),
  mining: { stageId: EVIL, edges: [0, 0.5, 1], positive: [1, 3], negative: [4, 1], margin: 0.95, medianPositive: 0.7, removedByMargin: 2 },
  funnel: [
    { label: EVIL, count: 30 },
    { label: 'training rows', count: 20 },
  ],
  lineage: [
    {
      digest: D,
      kind: EVIL,
      stageId: EVIL,
      stageKind: EVIL,
      rows: { [EVIL]: 3 },
      stats: { [EVIL]: EVIL },
      params: { [EVIL]: EVIL, llm: { model: 'gemma', baseUrl: EVIL }, styles: ['question', 'keyword'], maxSteps: 6, prompt: 'x'.repeat(500) },
      inputs: { [EVIL]: D },
    },
  ],
  examples: {
    human: [
      {
        label: EVIL,
        queries: [{ queryId: EVIL, query: EVIL, relevant: EVIL, relevantPath: EVIL, ranks: [{ system: EVIL, scored: true, rank: 3, top1: EVIL }] }],
      },
    ],
  },
};

describe('report rendering', () => {
  it('escapes every outside string: no markup from data survives', () => {
    const html = renderReportHtml(data);
    expect(html).not.toMatch(/<script|<img/i);
    expect(html).toContain(esc('<script>alert(1)</script>'));
    expect(html).toContain("default-src 'none'");
    // No external resource of any kind.
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//i);
  });

  it("lineage shows the producing stage's parameters, nested ones as dotted keys, long values cut", () => {
    const html = renderReportHtml(data);
    const params = /<td class="l params">(.*?)<\/td>/.exec(html)?.[1];
    expect(params).toContain(`llm.model=gemma, llm.baseUrl=${esc(EVIL)}`);
    expect(params).toContain(`styles=${esc('["question","keyword"]')}`);
    expect(params).toContain('maxSteps=6');
    expect(params).toContain(`prompt=${'x'.repeat(60)}…`);
    expect(params).not.toContain('x'.repeat(61));
  });

  it('states the verdict with the interval', () => {
    const html = renderReportHtml(data);
    expect(html).toContain('the fine-tuned model beats base');
    expect(html).toContain('+10.00 pts (95% CI +5.00 pts … +15.00 pts)');
    expect(html).toContain('fine-tuned alone is better than base reranked by the cross-encoder (base+rerank@50)');
  });

  it('summary.md keeps names inside their table cell', () => {
    const md = renderSummaryMd({ ...metrics, meta: { ...metrics.meta, models: { base: { name: 'a|b\nc', digest: D } } } });
    expect(md).toContain('base: a\\|b c');
    expect(md).toMatch(/\| finetuned \| 0\.500 \(0\.450–0\.550\)/);
    expect(md).toContain('Fine-tuned vs base: ndcg@10 +10.00 pts (95% CI +5.00 pts … +15.00 pts) — a real gain.');
  });

  it('a fine-tuned model worse than base is said so first, in red, in the report and the summary', () => {
    const worse = { diff: { value: -0.2, lo: -0.3, hi: -0.1 }, pValue: 0.001, significant: true };
    const worseDiffs = Object.fromEntries(METRIC_NAMES.map((m) => [m, worse])) as PairedComparison['metrics'];
    const m: MetricsJson = { ...metrics, pairedTests: { human: [{ a: 'base', b: 'finetuned', n: 100, metrics: worseDiffs }] } };
    const v = judge(m);
    expect(v).toMatchObject({ overall: 'worse', finetuned: { human: 'worse' } });
    const html = renderReportHtml({ ...data, metrics: m, verdict: v });
    expect(html).toMatch(/<div class="headline worse">The fine-tuned model is WORSE than its base/);
    expect(html).toContain('<div class="verdict worse"><b>human-written questions</b>: the fine-tuned model is worse than base');
    const md = renderSummaryMd(m);
    expect(md.split('\n')[4]).toBe('**Verdict: the fine-tuned model is WORSE than its base.** Do not use it as the result; the base model serves better.');
    expect(md).toContain('Fine-tuned vs base: ndcg@10 −20.00 pts (95% CI −30.00 pts … −10.00 pts) — a real loss.');
  });

  it('the training dev split counts when the train stage evaluated base at step 0', () => {
    const v = judge(metrics, {
      step: 40,
      figures: { 'dev_cosine_ndcg@10': { base: 0.8, finetuned: 0.7 } },
      outcome: 'worse',
    });
    // Better on the human questions, worse on dev: worse overall, never silently the result.
    expect(v).toMatchObject({ overall: 'worse', finetuned: { human: 'better', dev: 'worse' } });
    expect(v.notes[0]).toEqual({
      about: 'dev',
      severity: 'bad',
      text: 'Fine-tuned is WORSE than base on the training dev split: dev_cosine_ndcg@10 0.800 → 0.700 (step 40; means only, no interval).',
    });
    expect(renderSummaryMd(metrics, v)).toContain('- **Fine-tuned is WORSE than base on the training dev split: dev_cosine_ndcg@10 0.800 → 0.700');
  });

  it('a merge that kept the base says so, with the dev interval that decided it; a partial share says the model is a mix', () => {
    const merge = {
      share: 0,
      chosenBy: 'no dev gain beyond noise: the base is kept',
      candidates: [
        { share: 0, 'dev_cosine_ndcg@10': 0.977, gain: 0, gainLow: 0, gainHigh: 0 },
        { share: 0.5, 'dev_cosine_ndcg@10': 0.978, gain: 0.001, gainLow: -0.004, gainHigh: 0.006 },
        { share: 1, 'dev_cosine_ndcg@10': 0.979, gain: 0.002, gainLow: -0.01, gainHigh: 0.014 },
      ],
    };
    const evals = [
      { step: 0, metrics: { 'eval_dev_cosine_ndcg@10': 0.977 } },
      { step: 12, metrics: { 'dev_cosine_ndcg@10': 0.977 } },
    ];
    const dev = devCheckOf(evals, merge)!;
    expect(dev.merge).toEqual({ share: 0, chosenBy: merge.chosenBy, best: { share: 1, gain: 0.002, low: -0.01, high: 0.014 } });
    const v = judge(metrics, dev);
    const text = v.notes.find((n) => n.text.startsWith('Training handed over the base model unchanged'))?.text;
    expect(text).toContain('share 1: nDCG@10 +0.20 pts (95% CI −1.00 pts … +1.40 pts)');
    expect(renderSummaryMd(metrics, v)).toContain('Training handed over the base model unchanged');
    // A kept share of the fine-tune is not reported as the base.
    const kept = judge(metrics, devCheckOf(evals, { ...merge, share: 1, chosenBy: 'dev gain beyond noise' }));
    expect(kept.notes.some((n) => n.text.startsWith('Training handed over the base'))).toBe(false);
    expect(kept.notes.some((n) => n.text.includes('mergeWithBase'))).toBe(false);
    // A fixed share in between: the report says the rows are a mix, not the model as trained.
    const half = judge(metrics, devCheckOf(evals, { share: 0.5, chosenBy: 'parameter', candidates: [] }));
    const mixed = half.notes.find((n) => n.text.includes('mergeWithBase 0.5'))?.text;
    expect(mixed).toContain("weights are 50% the fine-tune's and 50% its base's (mergeWithBase 0.5, as the pipeline sets it");
    expect(renderSummaryMd(metrics, half)).toContain('mergeWithBase 0.5');
  });

  it('a sample of one reranked query is too few to judge, not "0.000 (0.000–0.000)"', () => {
    const zero = { diff: { value: 0, lo: 0, hi: 0 }, pValue: 1, significant: false };
    const m: MetricsJson = {
      ...metrics,
      human: { ...metrics.human!, 'base+rerank@50': table(0) },
      pairedTests: {
        human: [
          { a: 'base', b: 'finetuned', n: 100, metrics: diffs },
          { a: 'base+rerank@50', b: 'finetuned', n: 1, metrics: Object.fromEntries(METRIC_NAMES.map((k) => [k, zero])) as PairedComparison['metrics'] },
        ],
      },
      meta: { ...metrics.meta, evalSets: { human: { queries: 100, reranked: 1, skipped: 0, relevantPerQuery: 1 } } },
    };
    const v = judge(m);
    expect(v.baselines.human).toEqual({ 'base+rerank@50': 'too few queries' });
    // A system scored on a sample is never the best, however high its figures.
    expect(bestSystem({ ...m, human: { ...m.human!, 'base+rerank@50': table(0.99) } }, 'human')).toBe('finetuned');
    const md = renderSummaryMd(m);
    expect(md).toContain('| base+rerank@50 | 0.000 (n=1: too few to judge) |');
    expect(md).toContain('- base+rerank@50 was scored on 1 human-written questions only: too few to judge');
    expect(md).not.toContain('Fine-tuned vs base+rerank@50');
    expect(md).not.toMatch(/0\.000 \(-?0\.0\d\d–0\.0\d\d\)/);
    const html = renderReportHtml({ ...data, metrics: m, verdict: v });
    expect(html).toContain('base+rerank@50 was scored on 1 human-written questions only: too few to judge');
    expect(html).toContain('n = 1 of 100 queries: too few to judge');
    expect(html).not.toContain('fine-tuned alone is');
  });

  it('a reranker that makes its first stage worse is flagged, and fine-tuned is not said to beat it', () => {
    const harm = { diff: { value: -0.8, lo: -0.9, hi: -0.7 }, pValue: 0.001, significant: true };
    const harms = Object.fromEntries(METRIC_NAMES.map((k) => [k, harm])) as PairedComparison['metrics'];
    const m: MetricsJson = {
      ...metrics,
      human: { ...metrics.human!, 'base+rerank@50': table(0.05) },
      pairedTests: {
        human: [
          { a: 'base', b: 'finetuned', n: 100, metrics: diffs },
          { a: 'base', b: 'base+rerank@50', n: 50, metrics: harms },
          { a: 'base+rerank@50', b: 'finetuned', n: 50, metrics: diffs },
        ],
      },
    };
    const v = judge(m);
    expect(v.baselines.human).toEqual({ 'base+rerank@50': 'harms its first stage' });
    const text =
      'base+rerank@50: this reranker makes base worse on the human-written questions (accuracy@1 0.400 → 0.050, accuracy@10 0.400 → 0.050): ' +
      'not a meaningful comparison, and fine-tuned is not compared with it.';
    expect(v.notes[0]).toEqual({ about: 'baseline', severity: 'bad', text });
    expect(renderSummaryMd(m, v)).toContain(`- **${text}**`);
    const html = renderReportHtml({ ...data, metrics: m, verdict: v });
    expect(html).toContain(`<li class="bad">${esc(text)}</li>`);
    expect(html).not.toContain('fine-tuned alone is better than');
    expect(html).toMatch(/<tr class="flag">.*?base\+rerank@50.*?not a meaningful baseline/);
  });
  it('a model that lexical search (BM25, no model) beats is said so in red, with what its hybrid with BM25 does', () => {
    const lose = { diff: { value: -0.15, lo: -0.18, hi: -0.12 }, pValue: 0.001, significant: true };
    const win = { diff: { value: 0.02, lo: 0.01, hi: 0.03 }, pValue: 0.001, significant: true };
    const all = (d: typeof diff) => Object.fromEntries(METRIC_NAMES.map((k) => [k, d])) as PairedComparison['metrics'];
    const m: MetricsJson = {
      ...metrics,
      human: { base: table(0.64), finetuned: table(0.63), bm25: table(0.79), 'base+bm25': table(0.8), 'finetuned+bm25': table(0.81) },
      pairedTests: {
        human: [
          { a: 'base', b: 'finetuned', n: 100, metrics: diffs },
          { a: 'bm25', b: 'finetuned', n: 100, metrics: all(lose) },
          { a: 'bm25', b: 'finetuned+bm25', n: 100, metrics: all(win) },
        ],
      },
    };
    const v = judge(m);
    expect(v.lexical).toEqual({ human: { model: 'finetuned', versusBm25: 'worse', hybridVersusBm25: 'better' } });
    const text =
      'The fine-tuned model is WORSE than lexical search with no model (bm25) on the human-written questions: accuracy@1 0.790 → 0.630, ' +
      'ndcg@10 0.790 → 0.630, finetuned − bm25 accuracy@1 −15.00 pts (95% CI −18.00 pts … −12.00 pts). ' +
      'Fused with BM25 (finetuned+bm25) it beats bm25: accuracy@1 0.810, +2.00 pts (95% CI +1.00 pts … +3.00 pts); ' +
      'ndcg@10 0.810, +2.00 pts (95% CI +1.00 pts … +3.00 pts).';
    expect(v.notes[0]).toEqual({ about: 'lexical', severity: 'bad', text });
    expect(verdictStats(v)).toMatchObject({ 'vsBm25.human': 'worse', 'hybridVsBm25.human': 'better', 'best.human': 'finetuned+bm25' });
    expect(v.best).toEqual({ human: 'finetuned+bm25' });
    expect(v.notes).toContainEqual({ about: 'best', severity: 'info', text: 'Best on the human-written questions: finetuned+bm25, accuracy@1 0.810 (0.760–0.860), nDCG@10 0.810.' });
    expect(renderSummaryMd(m, v)).toContain(`- **${text}**`);
    expect(renderSummaryMd(m, v)).toMatch(/\| base \|[^\n]*\n\| finetuned \|[^\n]*\n\| bm25 \|[^\n]*\n\| base\+bm25 \|/);
    expect(renderReportHtml({ ...data, metrics: m, verdict: v })).toContain(`<li class="bad">${esc(text)}</li>`);

    // Without a fine-tuned model the base is what is judged; a model that beats BM25 is not a bad note.
    const baseOnly: MetricsJson = {
      ...metrics,
      human: { base: table(0.9), bm25: table(0.5) },
      pairedTests: { human: [{ a: 'bm25', b: 'base', n: 100, metrics: diffs }] },
    };
    const b = judge(baseOnly);
    expect(b.lexical).toEqual({ human: { model: 'base', versusBm25: 'better' } });
    expect(b.notes.find((n) => n.about === 'lexical')).toMatchObject({ severity: 'info', text: expect.stringMatching(/^The base model is better than lexical search/) });
  });
});
