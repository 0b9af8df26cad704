import { fmt, ms, pts } from './html.ts';
import { EVAL_SETS, type MetricsJson } from './metricsJson.ts';
import { HEADLINE_METRICS, SET_LABEL, deepestBaseReranker, findComparison, orderSystems, verdictOf } from './reportModel.ts';

/** Markdown table cells hold model names and the like: keep them on one line and out of the table syntax. */
function cell(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').replace(/\|/g, '\\|');
}

/** The short Markdown summary the CLI prints after a run: verdict, headline table, latency, gate. */
export function renderSummaryMd(m: MetricsJson): string {
  const lines: string[] = ['# embedflow evaluation', ''];
  const models = Object.entries(m.meta.models).map(([role, x]) => `${role}: ${cell(x.name)}`);
  lines.push(`${models.join(' · ')} — ${m.meta.corpus.chunks} chunks from ${m.meta.corpus.documents} documents`, '');
  for (const set of EVAL_SETS) {
    const table = m[set];
    if (!table) continue;
    const info = m.meta.evalSets[set]!;
    lines.push(`## ${SET_LABEL[set]} (${info.queries} queries)`, '');
    const ft = findComparison(m, set, 'base', 'finetuned');
    if (ft) {
      const v = verdictOf(ft, 'ndcg@10');
      const d = ft.metrics['ndcg@10'].diff;
      lines.push(
        `Fine-tuned vs base: ndcg@10 ${pts(d.value)} (95% CI ${pts(d.lo)} … ${pts(d.hi)}) — ${
          v === 'better' ? 'a real gain' : v === 'worse' ? 'a real loss' : 'not distinguishable from noise'
        }.`,
      );
    }
    const rr = deepestBaseReranker(Object.keys(table));
    const vsRr = rr && findComparison(m, set, rr, 'finetuned');
    if (vsRr && rr) {
      const d = vsRr.metrics['ndcg@10'].diff;
      lines.push(`Fine-tuned vs ${rr}: ndcg@10 ${pts(d.value)} (95% CI ${pts(d.lo)} … ${pts(d.hi)}) on ${vsRr.n} queries.`);
    }
    if (ft || vsRr) lines.push('');
    lines.push(`| system | ${HEADLINE_METRICS.join(' | ')} |`, `|---|${HEADLINE_METRICS.map(() => '---').join('|')}|`);
    for (const s of orderSystems(Object.keys(table))) {
      lines.push(`| ${cell(s)} | ${HEADLINE_METRICS.map((k) => `${fmt(table[s]![k].value)} (${fmt(table[s]![k].lo)}–${fmt(table[s]![k].hi)})`).join(' | ')} |`);
    }
    lines.push('');
  }
  const lat = [
    ...Object.entries(m.latency['embed+search']).flatMap(([model, s]) => (s ? [`${model} embed+search ${ms(s.p50)} / ${ms(s.p95)} / ${ms(s.p99)}`] : [])),
    ...Object.entries(m.latency.rerank).map(([depth, s]) => `${depth} ${ms(s.p50)} / ${ms(s.p95)} / ${ms(s.p99)}`),
  ];
  if (lat.length) lines.push(`Latency per query (p50 / p95 / p99): ${lat.join('; ')}.`, '');
  if (m.gate) lines.push(`Quality gate: ${m.gate.passed ? 'passed' : 'FAILED'} — ${m.gate.message}`, '');
  return `${lines.join('\n').trimEnd()}\n`;
}
