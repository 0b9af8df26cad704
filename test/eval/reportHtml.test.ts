import { describe, expect, it } from 'vitest';
import { esc } from '../../activities/evaluation/html.ts';
import { METRIC_NAMES } from '../../activities/evaluation/metrics.ts';
import type { MetricTable, MetricsJson, PairedComparison } from '../../activities/evaluation/metricsJson.ts';
import { renderReportHtml } from '../../activities/evaluation/reportHtml.ts';
import type { ReportData } from '../../activities/evaluation/reportModel.ts';
import { renderSummaryMd } from '../../activities/evaluation/summaryMd.ts';

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
});
