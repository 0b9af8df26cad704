/**
 * Escaping for the report. Every string that did not come from this codebase (document text, queries,
 * model names, stage ids, file paths) goes through `esc` before it lands in HTML or SVG: a document
 * containing `<script>` must show as text, never run.
 */
const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function esc(value: unknown): string {
  // C0 controls other than tab/newline are not valid in HTML text; drop them rather than render noise.
  return String(value)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, '')
    .replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** Shorten to `max` characters (by code point), with an ellipsis; the caller still escapes. */
export function clip(text: string, max: number): string {
  const chars = [...text.replace(/\s+/g, ' ').trim()];
  return chars.length > max ? `${chars.slice(0, max).join('')}…` : chars.join('');
}

export function fmt(x: number, digits = 3): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '–';
}

/** Signed difference in percentage points: +4.21 pts. */
export function pts(x: number, digits = 2): string {
  return `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(digits)} pts`;
}

export function ms(x: number): string {
  return !Number.isFinite(x) ? '–' : x >= 100 ? `${x.toFixed(0)} ms` : x >= 10 ? `${x.toFixed(1)} ms` : `${x.toFixed(2)} ms`;
}
