import { fmt, ms, pts } from './html.ts';
import { EVAL_SETS, type MetricsJson, type Verdict } from './metricsJson.ts';
import { HEADLINE_METRICS, SET_LABEL, deepestBaseReranker, findComparison, orderSystems } from './reportModel.ts';
import { judge, scoredOn, tooFew } from './verdict.ts';

/** Markdown table cells hold model names and the like: keep them on one line and out of the table syntax. */
function cell(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').replace(/\|/g, '\\|');
}

const ci = (d: { value: number; lo: number; hi: number }) => `${pts(d.value)} (95% CI ${pts(d.lo)} … ${pts(d.hi)})`;

const HEADLINE: Record<NonNullable<Verdict['overall']>, string> = {
  worse: '**Verdict: the fine-tuned model is WORSE than its base.** Do not use it as the result; the base model serves better.',
  better: '**Verdict: the fine-tuned model beats its base.**',
  'no difference': '**Verdict: the fine-tuned model cannot be told apart from its base.**',
};

/** The short Markdown summary the CLI prints after a run: verdict, headline table, latency, gate. */
export function renderSummaryMd(m: MetricsJson, verdict: Verdict = m.verdict ?? judge(m)): string {
  const lines: string[] = ['# embedflow evaluation', ''];
  const models = Object.entries(m.meta.models).map(([role, x]) => `${role}: ${cell(x.name)}`);
  lines.push(`${models.join(' · ')} — ${m.meta.corpus.chunks} chunks from ${m.meta.corpus.documents} documents`, '');
  if (verdict.overall) lines.push(HEADLINE[verdict.overall], '');
  // Fine-tuned vs base per eval set is said in that set's section below.
  const notes = verdict.notes.filter((n) => n.about !== 'evalSet');
  if (notes.length) lines.push(...notes.map((n) => `- ${n.severity === 'bad' ? `**${n.text}**` : n.text}`), '');
  for (const set of EVAL_SETS) {
    const table = m[set];
    if (!table) continue;
    const info = m.meta.evalSets[set]!;
    lines.push(`## ${SET_LABEL[set]} (${info.queries} queries)`, '');
    const ft = findComparison(m, set, 'base', 'finetuned');
    const outcome = verdict.finetuned[set];
    if (ft && outcome) {
      const words = { better: 'a real gain', worse: 'a real loss', 'no difference': 'not distinguishable from noise' }[outcome];
      lines.push(`Fine-tuned vs base: ndcg@10 ${ci(ft.metrics['ndcg@10'].diff)} — ${words}. accuracy@1 ${ci(ft.metrics['accuracy@1'].diff)}.`);
    }
    const rr = deepestBaseReranker(Object.keys(table));
    const vsRr = rr && findComparison(m, set, rr, 'finetuned');
    if (vsRr && rr) {
      // A reranker that harms its first stage, or a sample too small, is named in the notes above instead.
      if (verdict.baselines[set]?.[rr] === 'valid') lines.push(`Fine-tuned vs ${rr}: ndcg@10 ${ci(vsRr.metrics['ndcg@10'].diff)} on ${vsRr.n} queries.`);
    }
    if (ft || vsRr) lines.push('');
    lines.push(`| system | ${HEADLINE_METRICS.join(' | ')} |`, `|---|${HEADLINE_METRICS.map(() => '---').join('|')}|`);
    for (const s of orderSystems(Object.keys(table))) {
      const { n, sampled } = scoredOn(m, set, s);
      const figure = (k: (typeof HEADLINE_METRICS)[number]) =>
        tooFew(m, set, s)
          ? `${fmt(table[s]![k].value)} (n=${n}: too few to judge)`
          : `${fmt(table[s]![k].value)} (${fmt(table[s]![k].lo)}–${fmt(table[s]![k].hi)}${sampled ? `, n=${n}` : ''})`;
      lines.push(`| ${cell(s)} | ${HEADLINE_METRICS.map(figure).join(' | ')} |`);
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
