import { describe, expect, it } from 'vitest';
import { Bm25Index, fuseStandardized, lexicalTerms } from '../../activities/lexical/bm25.ts';

describe('lexical search (BM25)', () => {
  it('Japanese gives characters and character bigrams (across digits and kanji), Latin text gives words', () => {
    const terms = lexicalTerms('8世紀の ＧＤＰ統計\nand Tokyo');
    expect(terms).toEqual(expect.arrayContaining(['8世', '世紀', '紀の', '統計', '統', 'gdp', 'and', 'tokyo']));
    // NFKC and lower case: full-width letters are the same word; Latin words are not split into letters.
    expect(terms).not.toContain('g');
    expect(terms).not.toContain('ＧＤＰ');
    // Whitespace is not a character, and a Latin word ends the run of characters before it.
    expect(terms.some((t) => /\s/.test(t))).toBe(false);
    expect(terms).not.toContain('の統');
  });

  it('ranks the passage that shares a question’s rare terms first, and a question with no known term scores nothing', () => {
    const docs = [
      '東大寺は奈良にある寺院で、8世紀に建てられた。',
      '奈良の大仏は高さ約15メートルの盧舎那仏像である。',
      '京都の寺院には金閣寺や銀閣寺がある。',
      'The capital of France is Paris, on the Seine.',
    ];
    const index = new Bm25Index(docs);
    const best = (q: string) => {
      const s = index.scores(q);
      return s.indexOf(Math.max(...s));
    };
    expect(best('奈良の大仏の高さは何メートルですか。')).toBe(1);
    expect(best('8世紀に建てられた寺院はどこ?')).toBe(0);
    expect(best('金閣寺はどこにありますか')).toBe(2);
    expect(best('Which river runs through Paris?')).toBe(3);
    expect(Array.from(index.scores('ζζζ'))).toEqual([0, 0, 0, 0]);
  });

  it('a hybrid standardises both sides, so a side that scores nothing leaves the other’s order', () => {
    const order = (x: Float32Array) => Array.from(x.keys()).sort((a, b) => x[b]! - x[a]!);
    const dense = Float32Array.from([0.81, 0.83, 0.79, 0.8]);
    expect(order(fuseStandardized(dense, new Float32Array(4)))).toEqual([1, 0, 3, 2]);
    // Equal weight after standardising: a large BM25 gap does not drown a dense order on its own scale.
    const fused = fuseStandardized(Float32Array.from([0.9, 0.1, 0.1, 0.1]), Float32Array.from([0, 40, 0, 0]));
    expect(fused[0]).toBeCloseTo(fused[1]!, 5);
  });
});
