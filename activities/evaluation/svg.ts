import { esc, fmt } from './html.ts';

/**
 * Small inline-SVG charts for the report: no library, no script, no network — the report is one
 * file that opens from disk anywhere. Hover text uses SVG <title>, which browsers show natively.
 */

export interface Series {
  name: string;
  color: string;
  points: Array<[number, number]>;
  dashed?: boolean;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Logarithmic x axis (accuracy@k over k = 1..100). */
  xLog?: boolean;
  /** x values are counts (steps): ticks on whole numbers only. */
  xInteger?: boolean;
  yMin?: number;
  yMax?: number;
  xTicks?: number[];
}

const FONT = 'font-family="system-ui, sans-serif" font-size="11"';
const TITLE_FONT = 'font-family="system-ui, sans-serif" font-size="13" font-weight="600"';
/** Pixel coordinates with one decimal: enough for a crisp chart, and a smaller file. */
const r1 = (v: number) => Math.round(v * 10) / 10;
const MARGIN = { top: 28, bottom: 40, left: 52 };
/** Chart size without the legend; two charts and their legends fit side by side in the report. */
const PLOT_WIDTH = 490;
const HEIGHT = 300;

/** Margins with room on the right for the legend's longest name (about 6.5 px a character at 11 px). */
function margins(names: string[]): { top: number; right: number; bottom: number; left: number } {
  const longest = Math.max(0, ...names.map((n) => [...n].length));
  return { ...MARGIN, right: Math.min(320, Math.max(120, 40 + Math.ceil(longest * 6.5))) };
}

function niceTicks(min: number, max: number, count = 5, integer = false): number[] {
  if (!(max > min)) return [min];
  const raw = Math.max((max - min) / count, integer ? 1 : 0);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function legend(series: Array<{ name: string; color: string; dashed?: boolean }>, x: number, y: number): string {
  return series
    .map(
      (s, i) =>
        `<g transform="translate(${x},${y + i * 16})"><line x1="0" y1="0" x2="18" y2="0" stroke="${s.color}" stroke-width="3"${
          s.dashed ? ' stroke-dasharray="4 3"' : ''
        }/><text x="24" y="4" ${FONT}>${esc(s.name)}</text></g>`,
    )
    .join('');
}

export function lineChart(series: Series[], o: LineChartOptions): string {
  const M = margins(series.map((s) => s.name));
  const W = PLOT_WIDTH + M.right;
  const H = HEIGHT;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  if (xs.length === 0) return `<p class="empty">${esc(o.title)}: no data</p>`;
  const tx = o.xLog ? (v: number) => Math.log10(Math.max(v, 1e-9)) : (v: number) => v;
  const x0 = tx(Math.min(...xs));
  const x1 = tx(Math.max(...xs));
  const yMin = o.yMin ?? Math.min(...ys);
  const yMax = o.yMax ?? Math.max(...ys);
  const sx = (v: number) => r1(M.left + (x1 > x0 ? ((tx(v) - x0) / (x1 - x0)) * pw : pw / 2));
  const sy = (v: number) => r1(M.top + ph - (yMax > yMin ? ((v - yMin) / (yMax - yMin)) * ph : ph / 2));
  const yTicks = niceTicks(yMin, yMax);
  const xTicks = o.xTicks ?? niceTicks(Math.min(...xs), Math.max(...xs), 5, o.xInteger);
  const grid = yTicks
    .map((t) => `<line x1="${M.left}" x2="${M.left + pw}" y1="${sy(t)}" y2="${sy(t)}" stroke="#e5e7eb"/><text x="${M.left - 6}" y="${sy(t) + 4}" text-anchor="end" ${FONT}>${fmt(t, t < 10 && t % 1 ? 2 : 0)}</text>`)
    .join('');
  const xAxis = xTicks
    .map((t) => `<line x1="${sx(t)}" x2="${sx(t)}" y1="${M.top + ph}" y2="${M.top + ph + 4}" stroke="#6b7280"/><text x="${sx(t)}" y="${M.top + ph + 16}" text-anchor="middle" ${FONT}>${esc(t)}</text>`)
    .join('');
  const lines = series
    .map((s) => {
      const d = s.points.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
      const dots =
        s.points.length <= 60
          ? s.points.map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="${s.color}"><title>${esc(s.name)}: ${esc(x)} → ${fmt(y, 4)}</title></circle>`).join('')
          : '';
      return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 4"' : ''}><title>${esc(s.name)}</title></path>${dots}`;
    })
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(o.title)}">
<text x="${M.left}" y="16" ${TITLE_FONT}>${esc(o.title)}</text>
${grid}<line x1="${M.left}" x2="${M.left + pw}" y1="${M.top + ph}" y2="${M.top + ph}" stroke="#6b7280"/>${xAxis}
<text x="${M.left + pw / 2}" y="${H - 6}" text-anchor="middle" ${FONT}>${esc(o.xLabel)}</text>
<text transform="translate(12,${M.top + ph / 2}) rotate(-90)" text-anchor="middle" ${FONT}>${esc(o.yLabel)}</text>
${lines}${legend(series, M.left + pw + 14, M.top + 6)}</svg>`;
}

export interface Bar {
  value: number;
  lo?: number;
  hi?: number;
}

/** Grouped vertical bars (one group per category, one bar per series) with optional CI whiskers. */
export function barChart(
  categories: string[],
  series: Array<{ name: string; color: string; bars: Array<Bar | undefined> }>,
  o: { title: string; yLabel: string; yMax?: number; format?: (v: number) => string },
): string {
  const M = margins(series.map((s) => s.name));
  const W = PLOT_WIDTH + M.right;
  const H = HEIGHT;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const all = series.flatMap((s) => s.bars.flatMap((b) => (b ? [b.hi ?? b.value, b.value] : [])));
  if (all.length === 0) return `<p class="empty">${esc(o.title)}: no data</p>`;
  const yMax = o.yMax ?? Math.max(...all) * 1.1;
  const sy = (v: number) => r1(M.top + ph - (yMax > 0 ? (Math.max(0, v) / yMax) * ph : 0));
  const fmtV = o.format ?? ((v: number) => fmt(v, 3));
  const groupW = pw / categories.length;
  const barW = Math.min(28, (groupW * 0.8) / Math.max(1, series.length));
  const grid = niceTicks(0, yMax)
    .map((t) => `<line x1="${M.left}" x2="${M.left + pw}" y1="${sy(t)}" y2="${sy(t)}" stroke="#e5e7eb"/><text x="${M.left - 6}" y="${sy(t) + 4}" text-anchor="end" ${FONT}>${esc(fmtV(t))}</text>`)
    .join('');
  const bars = categories
    .map((cat, ci) => {
      const gx = M.left + ci * groupW + (groupW - barW * series.length) / 2;
      const rects = series
        .map((s, si) => {
          const b = s.bars[ci];
          if (!b) return '';
          const x = gx + si * barW;
          const tip = `${s.name} · ${cat}: ${fmtV(b.value)}${b.lo !== undefined ? ` (95% CI ${fmtV(b.lo)} – ${fmtV(b.hi ?? b.value)})` : ''}`;
          const whisker =
            b.lo !== undefined && b.hi !== undefined
              ? `<line x1="${x + barW / 2}" x2="${x + barW / 2}" y1="${sy(b.lo)}" y2="${sy(b.hi)}" stroke="#111827" stroke-width="1.2"/><line x1="${x + barW * 0.25}" x2="${x + barW * 0.75}" y1="${sy(b.lo)}" y2="${sy(b.lo)}" stroke="#111827"/><line x1="${x + barW * 0.25}" x2="${x + barW * 0.75}" y1="${sy(b.hi)}" y2="${sy(b.hi)}" stroke="#111827"/>`
              : '';
          return `<g><title>${esc(tip)}</title><rect x="${x.toFixed(1)}" y="${sy(b.value).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(M.top + ph - sy(b.value)).toFixed(1)}" fill="${s.color}"/>${whisker}</g>`;
        })
        .join('');
      return `${rects}<text x="${M.left + ci * groupW + groupW / 2}" y="${M.top + ph + 16}" text-anchor="middle" ${FONT}>${esc(cat)}</text>`;
    })
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(o.title)}">
<text x="${M.left}" y="16" ${TITLE_FONT}>${esc(o.title)}</text>
${grid}<line x1="${M.left}" x2="${M.left + pw}" y1="${M.top + ph}" y2="${M.top + ph}" stroke="#6b7280"/>
<text transform="translate(12,${M.top + ph / 2}) rotate(-90)" text-anchor="middle" ${FONT}>${esc(o.yLabel)}</text>
${bars}${legend(series, M.left + pw + 14, M.top + 6)}</svg>`;
}

export interface IntervalRow {
  label: string;
  value: number;
  lo: number;
  hi: number;
  /** A heading drawn above the first row of each group (a metric). */
  group: string;
}

/** Red when the interval lies below 0, green above, grey when it crosses 0: the colour is the verdict. */
export function intervalColor(lo: number, hi: number): string {
  return hi < 0 ? '#dc2626' : lo > 0 ? '#16a34a' : '#6b7280';
}

/**
 * Differences with their intervals as horizontal whiskers around a zero line (a forest plot), one
 * row per comparison, grouped by metric: which side of zero an interval falls on is the verdict.
 */
export function intervalChart(rows: IntervalRow[], o: { title: string; xLabel: string; format: (v: number) => string }): string {
  if (rows.length === 0) return `<p class="empty">${esc(o.title)}: no data</p>`;
  const ROW = 18;
  const labelW = Math.min(260, 24 + Math.max(...rows.map((r) => [...r.label].length)) * 6.5);
  const M = { top: 30, bottom: 40, left: labelW, right: 90 };
  const groups = [...new Set(rows.map((r) => r.group))];
  const H = M.top + M.bottom + (rows.length + groups.length) * ROW;
  const W = PLOT_WIDTH + 120;
  const pw = W - M.left - M.right;
  const extent = Math.max(1e-6, ...rows.flatMap((r) => [Math.abs(r.lo), Math.abs(r.hi), Math.abs(r.value)])) * 1.1;
  const sx = (v: number) => r1(M.left + ((v + extent) / (2 * extent)) * pw);
  const ticks = niceTicks(-extent, extent, 6);
  const bottom = H - M.bottom;
  const grid = ticks
    .map((t) => `<line x1="${sx(t)}" x2="${sx(t)}" y1="${M.top}" y2="${bottom}" stroke="#e5e7eb"/><text x="${sx(t)}" y="${bottom + 14}" text-anchor="middle" ${FONT}>${esc(o.format(t))}</text>`)
    .join('');
  let y = M.top;
  const body: string[] = [];
  for (const g of groups) {
    y += ROW;
    body.push(`<text x="6" y="${y - 5}" ${FONT} font-weight="600">${esc(g)}</text>`);
    for (const r of rows.filter((x) => x.group === g)) {
      const c = intervalColor(r.lo, r.hi);
      const cy = y + ROW / 2;
      const tip = `${r.group} · ${r.label}: ${o.format(r.value)} (95% CI ${o.format(r.lo)} … ${o.format(r.hi)})`;
      body.push(
        `<g><title>${esc(tip)}</title><text x="16" y="${cy + 4}" ${FONT}>${esc(r.label)}</text>` +
          `<line x1="${sx(r.lo)}" x2="${sx(r.hi)}" y1="${cy}" y2="${cy}" stroke="${c}" stroke-width="2.5"/>` +
          `<line x1="${sx(r.lo)}" x2="${sx(r.lo)}" y1="${cy - 4}" y2="${cy + 4}" stroke="${c}" stroke-width="1.5"/>` +
          `<line x1="${sx(r.hi)}" x2="${sx(r.hi)}" y1="${cy - 4}" y2="${cy + 4}" stroke="${c}" stroke-width="1.5"/>` +
          `<circle cx="${sx(r.value)}" cy="${cy}" r="3.5" fill="${c}"/>` +
          `<text x="${W - M.right + 8}" y="${cy + 4}" ${FONT} fill="${c}">${esc(o.format(r.value))}</text></g>`,
      );
      y += ROW;
    }
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(o.title)}">
<text x="6" y="16" ${TITLE_FONT}>${esc(o.title)}</text>
${grid}<line x1="${sx(0)}" x2="${sx(0)}" y1="${M.top}" y2="${bottom}" stroke="#111827" stroke-width="1.2"/>
<text x="${M.left + pw / 2}" y="${H - 6}" text-anchor="middle" ${FONT}>${esc(o.xLabel)}</text>
${body.join('')}</svg>`;
}

/**
 * Overlaid histograms on shared bin edges, each series as its share of its own total (a few
 * hundred positives beside thousands of negatives stay comparable), with optional vertical markers.
 */
export function histogram(
  edges: number[],
  series: Array<{ name: string; color: string; counts: number[] }>,
  o: { title: string; xLabel: string; markers?: Array<{ x: number; label: string; color: string }> },
): string {
  const M = margins([...series.map((s) => s.name), ...(o.markers ?? []).map((m) => m.label)]);
  const W = PLOT_WIDTH + M.right;
  const H = HEIGHT;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  if (edges.length < 2 || series.every((s) => s.counts.every((c) => c === 0))) return `<p class="empty">${esc(o.title)}: no data</p>`;
  const shares = series.map((s) => {
    const total = s.counts.reduce((a, b) => a + b, 0) || 1;
    return s.counts.map((c) => c / total);
  });
  const yMax = Math.max(...shares.flat()) * 1.1;
  const x0 = edges[0]!;
  const x1 = edges[edges.length - 1]!;
  const sx = (v: number) => r1(M.left + ((v - x0) / (x1 - x0 || 1)) * pw);
  const sy = (v: number) => r1(M.top + ph - (v / yMax) * ph);
  const grid = niceTicks(0, yMax)
    .map((t) => `<line x1="${M.left}" x2="${M.left + pw}" y1="${sy(t)}" y2="${sy(t)}" stroke="#e5e7eb"/><text x="${M.left - 6}" y="${sy(t) + 4}" text-anchor="end" ${FONT}>${fmt(t * 100, 0)}%</text>`)
    .join('');
  const xAxis = niceTicks(x0, x1, 6)
    .map((t) => `<line x1="${sx(t)}" x2="${sx(t)}" y1="${M.top + ph}" y2="${M.top + ph + 4}" stroke="#6b7280"/><text x="${sx(t)}" y="${M.top + ph + 16}" text-anchor="middle" ${FONT}>${esc(fmt(t, 2))}</text>`)
    .join('');
  const bars = series
    .map((s, si) =>
      shares[si]!
        .map((v, i) => {
          if (v === 0) return '';
          const a = sx(edges[i]!);
          const b = sx(edges[i + 1]!);
          return `<rect x="${a}" y="${sy(v)}" width="${r1(Math.max(0.5, b - a - 0.5))}" height="${r1(M.top + ph - sy(v))}" fill="${s.color}" fill-opacity="0.55"><title>${esc(
            `${s.name} ${fmt(edges[i]!, 2)}–${fmt(edges[i + 1]!, 2)}: ${s.counts[i]} (${fmt(v * 100, 1)}%)`,
          )}</title></rect>`;
        })
        .join(''),
    )
    .join('');
  const markers = (o.markers ?? [])
    .filter((m) => m.x >= x0 && m.x <= x1)
    .map((m) => `<line x1="${sx(m.x)}" x2="${sx(m.x)}" y1="${M.top}" y2="${M.top + ph}" stroke="${m.color}" stroke-width="2" stroke-dasharray="5 3"><title>${esc(m.label)}</title></line>`)
    .join('');
  const keys = [...series.map((s) => ({ name: s.name, color: s.color })), ...(o.markers ?? []).map((m) => ({ name: m.label, color: m.color, dashed: true }))];
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(o.title)}">
<text x="${M.left}" y="16" ${TITLE_FONT}>${esc(o.title)}</text>
${grid}<line x1="${M.left}" x2="${M.left + pw}" y1="${M.top + ph}" y2="${M.top + ph}" stroke="#6b7280"/>${xAxis}
<text x="${M.left + pw / 2}" y="${H - 6}" text-anchor="middle" ${FONT}>${esc(o.xLabel)}</text>
<text transform="translate(12,${M.top + ph / 2}) rotate(-90)" text-anchor="middle" ${FONT}>share of each kind</text>
${bars}${markers}${legend(keys, M.left + pw + 14, M.top + 6)}</svg>`;
}

/** Horizontal bars, widest first, each with its count and its share of the bar above (a data funnel). */
export function funnelChart(steps: Array<{ label: string; count: number }>, o: { title: string }): string {
  if (steps.length === 0) return `<p class="empty">${esc(o.title)}: no data</p>`;
  const ROW = 30;
  const labelW = Math.min(260, 20 + Math.max(...steps.map((s) => [...s.label].length)) * 6.5);
  const W = PLOT_WIDTH + 120;
  const H = 30 + steps.length * ROW + 10;
  const pw = W - labelW - 130;
  const max = Math.max(1, ...steps.map((s) => s.count));
  const rows = steps
    .map((s, i) => {
      const y = 30 + i * ROW;
      const w = r1((s.count / max) * pw);
      const prev = i > 0 ? steps[i - 1]!.count : undefined;
      const share = prev ? ` (${fmt((100 * s.count) / prev, 0)}% of the row above)` : '';
      return `<g><title>${esc(`${s.label}: ${s.count}${share}`)}</title><text x="6" y="${y + 15}" ${FONT}>${esc(s.label)}</text><rect x="${labelW}" y="${y + 3}" width="${Math.max(1, w)}" height="${ROW - 8}" fill="#2563eb" fill-opacity="${
        1 - (0.5 * i) / Math.max(1, steps.length - 1)
      }"/><text x="${labelW + Math.max(1, w) + 6}" y="${y + 15}" ${FONT}>${esc(s.count.toLocaleString('en-US'))}${esc(prev ? ` · ${fmt((100 * s.count) / prev, 0)}%` : '')}</text></g>`;
    })
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(o.title)}">
<text x="6" y="16" ${TITLE_FONT}>${esc(o.title)}</text>
${rows}</svg>`;
}
