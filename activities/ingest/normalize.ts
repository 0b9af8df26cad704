import { identityStep, type OffsetStep, OffsetStepBuilder } from './offsets.ts';

export type NormalizationForm = 'NFKC' | 'NFC' | 'none';

// A base character with the marks that compose with it: NFKC of a text is the concatenation of the
// NFKC of these clusters (half-width ﾞﾟ and Hangul jamo compose too, so they stay with their base).
const CLUSTER = /\P{M}[\p{M}\uFF9E\uFF9F\u1160-\u11FF]*|[\s\S]/gu;

/**
 * Unicode-normalise a text and record where lengths changed (㌔ → キロ, ｶﾞ → ガ), so a span of the
 * input can still be found in the output. Lines are checked whole first: most are unchanged and stay
 * one char-for-char segment; a changed line is redone cluster by cluster.
 */
export function normalizeText(input: string, form: NormalizationForm): { text: string; step: OffsetStep } {
  if (form === 'none') return { text: input, step: identityStep(input.length) };
  const whole = input.normalize(form);
  if (whole === input) return { text: input, step: identityStep(input.length) };
  const b = new OffsetStepBuilder();
  let pos = 0;
  while (pos < input.length) {
    const nl = input.indexOf('\n', pos);
    const end = nl === -1 ? input.length : nl + 1;
    const line = input.slice(pos, end);
    const norm = line.normalize(form);
    if (norm === line || norm.length === line.length) b.emit(pos, end, norm);
    else normalizeLine(b, line, pos, norm, form);
    pos = end;
  }
  return b.finish(input.length);
}

function normalizeLine(b: OffsetStepBuilder, line: string, offset: number, whole: string, form: 'NFKC' | 'NFC'): void {
  const pieces: Array<[number, number, string]> = [];
  let joined = '';
  for (const m of line.matchAll(CLUSTER)) {
    const out = m[0].normalize(form);
    pieces.push([offset + m.index, offset + m.index + m[0].length, out]);
    joined += out;
  }
  // Composition across clusters would make the pieces disagree with the whole line: keep the line atomic.
  if (joined !== whole) {
    b.emit(offset, offset + line.length, whole);
    return;
  }
  for (const [s, e, out] of pieces) b.emit(s, e, out);
}
