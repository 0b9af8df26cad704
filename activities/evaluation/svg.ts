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
  /** Logarithmic x axis (recall@k over k = 1..100). */
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
