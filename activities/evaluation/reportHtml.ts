import { EVAL_SETS, type EvalSetName, type Outcome } from './metricsJson.ts';
import { METRIC_NAMES } from './metrics.ts';
import { clip, esc, fmt, ms, pts } from './html.ts';
import {
  type ExampleQuery,
  HEADLINE_METRICS,
  type ReportData,
  SET_LABEL,
  colorOf,
  deepestBaseReranker,
  findComparison,
  orderSystems,
} from './reportModel.ts';
import { type IntervalRow, barChart, funnelChart, histogram, intervalChart, lineChart } from './svg.ts';
import { outcomeOf, scoredOn, tooFew } from './verdict.ts';

/**
 * The evaluation report as one self-contained HTML file: inline CSS and SVG, no script, no external
 * resource. A Content-Security-Policy forbids scripts and network loads outright, so even a string
 * that escaped escaping could not run or phone home.
 */
export function renderReportHtml(d: ReportData): string {
  const m = d.metrics;
  const sets = EVAL_SETS.filter((s) => m[s]);
  const title = `embedflow evaluation — ${m.meta.models['finetuned']?.name ?? m.meta.models['base']?.name ?? 'model'}`;
  const body = [
    header(d, title),
    verdicts(d, sets),
    ...sets.map((s) => setSection(d, s)),
    winsAndLosses(d, sets),
    datasetSection(d, sets),
    trainingSection(d),
    latencySection(d),
    ...sets.flatMap((s) => (d.examples[s] ? [examplesSection(d, s)] : [])),
    lineageSection(d),
    definitions(d),
  ].join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","Hiragino Sans","Noto Sans CJK JP",sans-serif;color:#111827;margin:0 auto;max-width:1100px;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.sub{color:#6b7280;font-size:12px}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f9fafb;font-weight:600}td.l,th.l{text-align:left}td small{color:#6b7280;display:block;font-size:11px}
td.best{font-weight:700}.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}.card{border:1px solid #e5e7eb;border-radius:8px;padding:8px 12px;min-width:130px}
.card b{display:block;font-size:18px}.card span{color:#6b7280;font-size:12px}
.verdict{border-left:4px solid #9ca3af;background:#f9fafb;padding:8px 12px;margin:8px 0}.verdict.better{border-color:#16a34a}.verdict.worse{border-color:#dc2626;background:#fef2f2;color:#991b1b}
.headline{font-size:16px;font-weight:700;padding:10px 14px;border-radius:6px;margin:8px 0;background:#f3f4f6}.headline.worse{background:#dc2626;color:#fff}.headline.better{background:#dcfce7;color:#166534}
.notes li.bad{color:#b91c1c;font-weight:600}td.worse{color:#b91c1c}tr.flag td{background:#fef2f2}.flagnote{color:#b91c1c;font-size:11px;display:block}
.wl{display:grid;grid-template-columns:1fr 1fr;gap:10px}.wl>div{border:1px solid #e5e7eb;border-radius:8px;padding:8px 12px;font-size:13px}.wl .win{border-left:4px solid #16a34a}.wl .loss{border-left:4px solid #dc2626}.wl p{margin:4px 0}.wl .win,.wl .loss{padding:2px 0 2px 10px;margin:8px 0}.wl .lbl{color:#6b7280;font-size:11px;text-transform:uppercase}
.gate.pass{color:#166534}.gate.fail{color:#b91c1c;font-weight:600}.empty{color:#6b7280;font-style:italic}
.lineage .params{font-size:11px;max-width:360px}.charts{display:flex;flex-wrap:wrap;gap:12px}.ex td{text-align:left;max-width:330px}.q{font-weight:600}
`;

function header(d: ReportData, title: string): string {
  const models = Object.entries(d.metrics.meta.models)
    .map(([role, mm]) => `${esc(role)}: <b>${esc(mm.name)}</b> <span class="mono">${esc(mm.digest.slice(0, 12))}</span>`)
    .join(' · ');
  return `<h1>${esc(title)}</h1>
<div class="sub">evaluation <span class="mono">${esc(d.evaluation.digest.slice(0, 16))}</span> · ${esc(d.evaluation.createdAt)}${
    d.evaluation.runId ? ` · run ${esc(d.evaluation.runId)}` : ''
  }</div>
<p>${models}</p>`;
}

function gateLine(d: ReportData): string {
  const g = d.metrics.gate;
  if (!g) return '';
  return `<p class="gate ${g.passed ? 'pass' : 'fail'}">Quality gate (${esc(g.evalSet)} ${esc(g.metric)}, min gain ${esc(pts(g.minGain))}): ${
    g.passed ? 'passed' : 'FAILED'
  } — ${esc(g.message)}</p>`;
}

function diffText(d: { value: number; lo: number; hi: number }): string {
  return `${pts(d.value)} (95% CI ${pts(d.lo)} … ${pts(d.hi)})`;
}

const OUTCOME_CLASS: Record<Outcome, string> = { better: 'better', worse: 'worse', 'no difference': 'same' };

const HEADLINE: Record<Outcome, string> = {
  worse: 'The fine-tuned model is WORSE than its base. Do not use it as the result: the base model serves better.',
  better: 'The fine-tuned model beats its base.',
  'no difference': 'The fine-tuned model cannot be told apart from its base.',
};

function verdicts(d: ReportData, sets: EvalSetName[]): string {
  const m = d.metrics;
  const v = d.verdict;
  const out: string[] = [];
  if (v.overall) out.push(`<div class="headline ${OUTCOME_CLASS[v.overall]}">${esc(HEADLINE[v.overall])}</div>`);
  // Fine-tuned vs base per eval set has its own box below; the notes say the rest (baselines, dev split).
  const notes = v.notes.filter((n) => n.about !== 'evalSet');
  if (notes.length) out.push(`<ul class="notes">${notes.map((n) => `<li class="${n.severity}">${esc(n.text)}</li>`).join('')}</ul>`);
  for (const set of sets) {
    const systems = Object.keys(m[set]!);
    const ft = findComparison(m, set, 'base', 'finetuned');
    if (ft) {
      const o = outcomeOf(ft);
      const word = { better: 'beats', worse: 'is worse than', 'no difference': 'cannot be told apart from' }[o];
      out.push(`<div class="verdict ${OUTCOME_CLASS[o]}"><b>${esc(SET_LABEL[set])}</b>: the fine-tuned model ${word} base — ${HEADLINE_METRICS.map(
        (k) => `${esc(k)} ${fmt(m[set]!['base']![k].value)} → ${fmt(m[set]!['finetuned']![k].value)} <small>${esc(diffText(ft.metrics[k].diff))}${
          ft.metrics[k].significant ? '' : ', not significant'
        }</small>`,
      ).join('; ')}. n = ${ft.n}.</div>`);
    }
    const rr = deepestBaseReranker(systems);
    const vsRr = rr && findComparison(m, set, rr, 'finetuned');
    const status = rr ? v.baselines[set]?.[rr] : undefined;
    if (vsRr && rr && status === 'valid') {
      const o = outcomeOf(vsRr);
      const word = { better: 'better than', worse: 'worse than', 'no difference': 'as good as (no significant difference from)' }[o];
      out.push(`<div class="verdict ${OUTCOME_CLASS[o]}"><b>${esc(SET_LABEL[set])}</b>: fine-tuned alone is ${word} base reranked by the cross-encoder (${esc(rr)}): ndcg@10 ${esc(
        diffText(vsRr.metrics['ndcg@10'].diff),
      )}, accuracy@1 ${esc(diffText(vsRr.metrics['accuracy@1'].diff))} on the ${vsRr.n} reranked queries.</div>`);
    }
  }
  if (!m['generated']?.['finetuned'] && !m['human']?.['finetuned']) out.push('<p class="empty">No fine-tuned model in this evaluation: the numbers below are the baseline.</p>');
  const charts = sets.map((s) => diffChart(d, s)).filter(Boolean);
  return `<h2>Verdict</h2>${out.join('\n')}${gateLine(d)}${charts.length ? `<h3>What the verdict rests on: paired differences with 95% CIs</h3><div class="charts">${charts.join('')}</div>` : ''}`;
}

/** Fine-tuned minus base, and minus each reranked system it can be compared with, per headline metric. */
function diffChart(d: ReportData, set: EvalSetName): string {
  const m = d.metrics;
  const table = m[set]!;
  if (!table['finetuned']) return '';
  const others = orderSystems(Object.keys(table)).filter((s) => s === 'base' || s === 'bm25' || s.startsWith('base+rerank@'));
  const rows: IntervalRow[] = [];
  for (const k of HEADLINE_METRICS) {
    for (const a of others) {
      const cmp = findComparison(m, set, a, 'finetuned');
      const status = d.verdict.baselines[set]?.[a];
      if (!cmp || (status && status !== 'valid')) continue;
      const t = cmp.metrics[k].diff;
      rows.push({ group: k, label: `fine-tuned − ${a}${cmp.n < (m.meta.evalSets[set]?.queries ?? 0) ? ` (n=${cmp.n})` : ''}`, ...t });
    }
  }
  return intervalChart(rows, { title: `Fine-tuned minus each system — ${SET_LABEL[set]}`, xLabel: 'difference (points; red: worse beyond the CI, green: better)', format: (x) => `${x >= 0 ? '+' : '−'}${fmt(Math.abs(x * 100), 1)}` });
}

function setSection(d: ReportData, set: EvalSetName): string {
  const table = d.metrics[set]!;
  const systems = orderSystems(Object.keys(table));
  const n = d.metrics.meta.evalSets[set];
  const judged = systems.filter((s) => !tooFew(d.metrics, set, s));
  const best = Object.fromEntries(METRIC_NAMES.map((k) => [k, Math.max(...judged.map((s) => table[s]![k]?.value ?? Number.NEGATIVE_INFINITY))]));
  const rows = systems
    .map((s) => {
      const scored = scoredOn(d.metrics, set, s);
      const few = tooFew(d.metrics, set, s);
      const sampled = scored.sampled ? `<small>n = ${scored.n} of ${n?.queries ?? '?'} queries${few ? ': too few to judge' : ''}</small>` : '';
      const harms = d.verdict.baselines[set]?.[s] === 'harms its first stage';
      const flag = harms ? `<span class="flagnote">makes ${esc(s.split('+')[0])} worse: not a meaningful baseline</span>` : '';
      return `<tr class="${harms ? 'flag' : ''}"><td class="l"><span class="sw" style="background:${colorOf(s, systems)}"></span>${esc(s)}${sampled}${flag}</td>${METRIC_NAMES.map((k) => {
        const c = table[s]![k];
        // True recall is absent in evaluations written before it was computed (metrics.json version 1).
        if (!c) return '<td>—</td>';
        const ci = few ? `n=${scored.n}, no interval` : `${fmt(c.lo)} – ${fmt(c.hi)}`;
        return `<td class="${c.value === best[k] && !few && !harms ? 'best' : ''}">${fmt(c.value)}<small>${ci}</small></td>`;
      }).join('')}</tr>`;
    })
    .join('');
  const curves = d.curves[set] ?? {};
  const curve = lineChart(
    orderSystems(Object.keys(curves)).map((s) => ({
      name: s,
      color: colorOf(s, systems),
      dashed: s.includes('+rerank@'),
      points: curves[s]!.map((v, i): [number, number] => [i + 1, v]),
    })),
    { title: `Accuracy@k — ${SET_LABEL[set]}`, xLabel: 'k (log scale)', yLabel: 'accuracy@k (hit rate)', xLog: true, yMin: 0, yMax: 1, xTicks: [1, 2, 5, 10, 20, 50, 100] },
  );
  const bars = barChart(
    HEADLINE_METRICS,
    systems.map((s) => ({ name: s, color: colorOf(s, systems), bars: HEADLINE_METRICS.map((k) => table[s]![k]) })),
    { title: `Headline metrics with 95% CIs — ${SET_LABEL[set]}`, yLabel: 'score', yMax: 1 },
  );
  const tests = (d.metrics.pairedTests[set] ?? [])
    .map(
      (c) =>
        `<tr><td class="l">${esc(c.b)} vs ${esc(c.a)}</td><td>${c.n}</td>${HEADLINE_METRICS.map((k) => {
          const t = c.metrics[k];
          return `<td class="${t.significant ? (t.diff.hi < 0 ? 'best worse' : 'best') : ''}">${esc(pts(t.diff.value))}<small>${esc(pts(t.diff.lo))} … ${esc(pts(t.diff.hi))}; p=${fmt(t.pValue, 3)}</small></td>`;
        }).join('')}</tr>`,
    )
    .join('');
  return `<h2>${esc(SET_LABEL[set])}${n ? ` <span class="sub">(${n.queries} queries, ${fmt(n.relevantPerQuery, 2)} relevant chunks each)</span>` : ''}</h2>
<table><tr><th class="l">system</th>${METRIC_NAMES.map((k) => `<th>${esc(k)}</th>`).join('')}</tr>${rows}</table>
<div class="charts">${curve}${bars}</div>
${tests ? `<h3>Paired tests (difference b − a, 95% CI, permutation p)</h3><table><tr><th class="l">comparison</th><th>n</th>${HEADLINE_METRICS.map((k) => `<th>${esc(k)}</th>`).join('')}</tr>${tests}</table>` : ''}`;
}

function latencySection(d: ReportData): string {
  const lat = d.metrics.latency;
  const rows: Array<[string, string, { n: number; mean: number; p50: number; p95: number; p99: number; max: number }]> = [];
  for (const [model, s] of Object.entries(lat['embed+search'])) if (s) rows.push([`${model}`, 'embed query + exact search', s]);
  for (const [depth, s] of Object.entries(lat.rerank)) rows.push([depth, `cross-encoder on base's top ${depth.split('@')[1]}`, s]);
  if (rows.length === 0) return '';
  const chart = barChart(
    ['p50', 'p95', 'p99'],
    rows.map(([name], i) => ({
      name,
      color: ['#6b7280', '#2563eb', '#f59e0b', '#d97706', '#b45309'][i % 5]!,
      bars: [{ value: rows[i]![2].p50 }, { value: rows[i]![2].p95 }, { value: rows[i]![2].p99 }],
    })),
    { title: 'Per-query latency', yLabel: 'milliseconds', format: (v) => fmt(v, v < 10 ? 1 : 0) },
  );
  const tp = d.metrics.meta.throughput;
  return `<h2>Latency <span class="sub">(per query, measured in the evaluating process)</span></h2>
<table><tr><th class="l">what</th><th class="l">measures</th><th>n</th><th>p50</th><th>p95</th><th>p99</th><th>mean</th><th>queries/s at p50</th></tr>${rows
    .map(
      ([name, what, s]) =>
        `<tr><td class="l">${esc(name)}</td><td class="l">${esc(what)}</td><td>${s.n}</td><td>${ms(s.p50)}</td><td>${ms(s.p95)}</td><td>${ms(s.p99)}</td><td>${ms(
          s.mean,
        )}</td><td>${fmt(1000 / s.p50, 1)}</td></tr>`,
    )
    .join('')}</table>
<div class="charts">${chart}</div>
<p class="sub">Whole evaluation: ${tp.queries} queries in ${fmt(tp.seconds, 1)} s (${fmt(tp.queriesPerSecond, 2)} queries/s, corpus embedding and reranking included).</p>`;
}

function card(label: string, value: string | number, note = ''): string {
  return `<div class="card"><b>${esc(value)}</b><span>${esc(label)}</span>${note ? `<br><span>${esc(note)}</span>` : ''}</div>`;
}

function datasetSection(d: ReportData, sets: EvalSetName[]): string {
  const meta = d.metrics.meta;
  const cards = [card('documents', meta.corpus.documents), card('chunks (the search corpus)', meta.corpus.chunks)];
  for (const s of sets) {
    const e = meta.evalSets[s]!;
    cards.push(card(SET_LABEL[s], e.queries, e.skipped ? `${e.skipped} skipped (relevant chunk not in corpus)` : ''));
  }
  const byKind = (kind: string) => d.lineage.filter((n) => n.kind === kind && !n.missing);
  for (const ds of byKind('dataset')) {
    for (const [file, rows] of Object.entries(ds.rows)) cards.push(card(`training pairs (${file})`, rows));
  }
  for (const q of byKind('queries')) {
    const rows = Object.values(q.rows)[0];
    if (rows !== undefined) cards.push(card(`training queries (${q.stageId ?? 'queries'})`, rows));
  }
  const human = byKind('evalQuestions')[0];
  const humanNote =
    human && typeof human.stats['spansSplitAcrossChunks'] === 'number'
      ? `<p class="sub">Human questions: ${esc(human.stats['spansSplitAcrossChunks'])} answer spans straddle a chunk boundary (every chunk holding part of the span counts as relevant); ${esc(
          human.stats['dropped'] ?? 0,
        )} dropped (span in text removed by ingest).</p>`
      : '';
  const charts = [d.funnel.length >= 2 ? funnelChart(d.funnel, { title: 'From chunks to training rows' }) : '', miningChart(d)].filter(Boolean);
  return `<h2>Data</h2><div class="cards">${cards.join('')}</div>${humanNote}
${charts.length ? `<div class="charts">${charts.join('')}</div>` : ''}${miningNote(d)}
<p class="sub">Filter and generation counts of every stage are in the lineage table below.</p>`;
}

function miningChart(d: ReportData): string {
  const g = d.mining;
  if (!g) return '';
  const marker = Number.isFinite(g.margin)
    ? [{ x: g.margin * g.medianPositive, label: `relativeMargin ${fmt(1 - g.margin, 2)}: ${fmt(g.margin, 2)} × median positive`, color: '#dc2626' }]
    : [];
  return histogram(
    g.edges,
    [
      { name: 'positive (query, its chunk)', color: '#16a34a', counts: g.positive },
      { name: 'hard negatives kept', color: '#f59e0b', counts: g.negative },
    ],
    { title: `Mined similarity scores — ${g.stageId}`, xLabel: "cosine similarity (the base model's)", markers: marker },
  );
}

function miningNote(d: ReportData): string {
  const g = d.mining;
  if (!g) return '';
  const removed = g.removedByMargin === null ? '' : ` ${g.removedByMargin} candidates were dropped that way.`;
  return `<p class="sub">Hard negatives: a candidate scoring above (1 − relativeMargin) × its own positive's score is dropped as a likely unlabelled positive; the dashed line is that bound for the median positive (${fmt(
    g.medianPositive,
  )}).${esc(removed)} Negatives piled up against the line mean the margin decides which texts the model learns to push away.</p>`;
}

function trainingSection(d: ReportData): string {
  const palette = ['#2563eb', '#7c3aed'];
  const charts = d.training
    .filter((t) => t.points.length > 0)
    .map((t, i) => lineChart([{ name: t.name, color: palette[i % 2]!, points: t.points }], { title: `Training loss — ${t.name}`, xLabel: 'step', yLabel: 'loss', xInteger: true }));
  if (d.devCurves.length) {
    const devPalette = ['#2563eb', '#16a34a', '#7c3aed'];
    charts.push(
      lineChart(
        d.devCurves.map((c, i) => ({ name: c.name, color: devPalette[i % devPalette.length]!, points: c.points })),
        { title: 'Dev split over training steps (fine-tuned model)', xLabel: 'step', yLabel: 'score', xInteger: true, yMin: 0, yMax: 1 },
      ),
    );
  }
  return `<h2>Training</h2>${charts.length ? `<div class="charts">${charts.join('')}</div>` : ''}${
    d.trainingNote ? `<p class="empty">${esc(d.trainingNote)}</p>` : ''
  }`;
}

const WIN_LOSS_COUNT = 3;

/** A few questions where fine-tuning moved the answer up, and a few where it moved it down, with the chunks. */
function winsAndLosses(d: ReportData, sets: EvalSetName[]): string {
  const parts = sets.flatMap((set) => {
    const lists = d.examples[set] ?? [];
    const wins = lists.find((l) => l.label.startsWith('Most improved'))?.queries.slice(0, WIN_LOSS_COUNT) ?? [];
    const losses = lists.find((l) => l.label.startsWith('Most regressed'))?.queries.slice(0, WIN_LOSS_COUNT) ?? [];
    if (wins.length + losses.length === 0) return [];
    const col = (kind: 'win' | 'loss', list: ExampleQuery[]) =>
      `<div><h3>${kind === 'win' ? 'Fine-tuned wins' : 'Fine-tuned loses'}</h3>${list.map((e) => winLossCard(kind, e)).join('') || '<p class="empty">none</p>'}</div>`;
    return [`<h3>${esc(SET_LABEL[set])}</h3><div class="wl">${col('win', wins)}${col('loss', losses)}</div>`];
  });
  return parts.length ? `<h2>Where fine-tuning wins and loses</h2>${parts.join('')}` : '';
}

function winLossCard(kind: 'win' | 'loss', e: ExampleQuery): string {
  const rank = (system: string) => e.ranks.find((r) => r.system === system);
  const line = (system: string, label: string) => {
    const r = rank(system);
    if (!r) return '';
    return `<p><span class="lbl">${esc(label)} · rank of the answer ${r.rank === null ? '&gt;100' : r.rank}</span><br>top 1: ${esc(clip(r.top1, 220))}</p>`;
  };
  return `<div class="${kind}"><p class="q">${esc(clip(e.query, 200))}</p><p><span class="lbl">relevant chunk${e.relevantPath ? ` · ${esc(e.relevantPath)}` : ''}</span><br>${esc(
    clip(e.relevant, 320),
  )}</p>${line('base', 'base')}${line('finetuned', 'fine-tuned')}</div>`;
}

function rankCell(r: ExampleQuery['ranks'][number]): string {
  if (!r.scored) return '<td class="empty">not scored<small>(outside the reranked sample)</small></td>';
  return `<td>rank ${r.rank === null ? '&gt;100' : r.rank}<small>top 1: ${esc(clip(r.top1, 100))}</small></td>`;
}

function exampleRows(list: ExampleQuery[]): string {
  return list
    .map(
      (e) =>
        `<tr><td><div class="q">${esc(clip(e.query, 160))}</div><small class="mono">${esc(e.queryId)}</small></td><td>${esc(clip(e.relevant, 140))}<small>${esc(
          e.relevantPath,
        )}</small></td>${e.ranks.map(rankCell).join('')}</tr>`,
    )
    .join('');
}

function examplesSection(d: ReportData, set: EvalSetName): string {
  const lists = d.examples[set]!.filter((l) => l.queries.length > 0);
  if (lists.length === 0) return '';
  const systems = lists[0]!.queries[0]!.ranks.map((r) => r.system);
  const head = `<tr><th class="l">query</th><th class="l">relevant chunk</th>${systems.map((s) => `<th class="l">${esc(s)}</th>`).join('')}</tr>`;
  return `<h2>Examples — ${esc(SET_LABEL[set])}</h2>${lists
    .map((l) => `<h3>${esc(l.label)}</h3><table class="ex">${head}${exampleRows(l.queries)}</table>`)
    .join('')}`;
}

function lineageSection(d: ReportData): string {
  const rows = d.lineage
    .map((n) => {
      const stats = Object.entries(n.stats)
        .filter(([, v]) => typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean')
        .slice(0, 10)
        .map(([k, v]) => `${esc(k)}=${esc(v)}`)
        .join(', ');
      const rows = Object.entries(n.rows)
        .map(([f, r]) => `${esc(f)}: ${r}`)
        .join(', ');
      const inputs = Object.entries(n.inputs)
        .map(([name, dg]) => `${esc(name)} <span class="mono">${esc(dg.slice(0, 8))}</span>`)
        .join(', ');
      const kind = n.stageKind && n.stageKind !== n.stageId ? `<small>${esc(n.stageKind)}</small>` : '';
      const params = flatParams(n.params)
        .map(([k, v]) => `${esc(k)}=${esc(clip(v, PARAM_CHARS))}`)
        .join(', ');
      return `<tr><td class="l">${esc(n.stageId ?? '—')}${kind}</td><td class="l">${esc(n.kind)}</td><td class="l mono">${esc(
        n.digest.slice(0, 12),
      )}${n.missing ? ' (not in store)' : ''}</td><td class="l">${rows}</td><td class="l params">${params}</td><td class="l">${stats}</td><td class="l">${inputs}</td></tr>`;
    })
    .join('');
  return `<h2>Lineage</h2><table class="lineage"><tr><th class="l">stage</th><th class="l">artifact</th><th class="l">digest</th><th class="l">rows</th><th class="l">params</th><th class="l">stats</th><th class="l">inputs</th></tr>${rows}</table>`;
}

/** Characters of one parameter value shown (a prompt template or a path can be long). */
const PARAM_CHARS = 60;

/** Nested parameter objects as dotted keys (llm.model=...), other values as JSON: one `key=value` per leaf. */
function flatParams(params: unknown, prefix = ''): Array<[string, string]> {
  if (!params || typeof params !== 'object' || Array.isArray(params)) return [];
  return Object.entries(params as Record<string, unknown>).flatMap(([k, v]): Array<[string, string]> => {
    if (v === undefined) return [];
    const key = `${prefix}${k}`;
    if (v && typeof v === 'object' && !Array.isArray(v)) return flatParams(v, `${key}.`);
    return [[key, typeof v === 'string' ? v : JSON.stringify(v)]];
  });
}

function definitions(d: ReportData): string {
  const b = d.metrics.meta.bootstrap;
  return `<h2>Definitions</h2><ul>${Object.entries(d.metrics.meta.definitions)
    .map(([k, v]) => `<li><b>${esc(k)}</b>: ${esc(v)}</li>`)
    .join('')}<li>bootstrap: ${b.samples} resamples, seed ${b.seed}, ${esc(((1 - b.alpha) * 100).toFixed(0))}% intervals</li></ul>`;
}
