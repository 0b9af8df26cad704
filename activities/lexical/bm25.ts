/**
 * Lexical search (BM25) over a chunk corpus: the baseline any search engine gives without an embedding
 * model, and the other half of a hybrid. Measured on Japanese Wikipedia questions, it is not a weak one:
 * on jaquad-dev's 3,939 human questions BM25 over character bigrams found the right chunk first for
 * 78.5% against multilingual-e5-small's 63.6% (BENCHMARKS.md, "Lexical search").
 *
 * Terms: text NFKC-normalised and lower-cased; runs of Latin letters are words; everything else
 * (kana, kanji, hangul, digits, punctuation), with whitespace removed, gives its characters and
 * character bigrams. Japanese has no spaces to split words on, and bigrams across a digit and a kanji
 * ("8世", "世紀") keep what a question shares with its passage; a word segmenter is not needed for that.
 */

/** BM25's term-frequency saturation and length normalisation, at their customary values. */
const K1 = 1.2;
const B = 0.75;

const LATIN_WORD_OR_SPACE = /(\p{Script=Latin}+)|(\s+)|([^])/gu;

export function lexicalTerms(text: string): string[] {
  const terms: string[] = [];
  let run: string[] = [];
  const flush = () => {
    for (let i = 0; i < run.length; i++) {
      terms.push(run[i]!);
      if (i + 1 < run.length) terms.push(run[i]! + run[i + 1]!);
    }
    run = [];
  };
  for (const m of text.normalize('NFKC').toLowerCase().matchAll(LATIN_WORD_OR_SPACE)) {
    if (m[1]) {
      flush();
      terms.push(m[1]);
    } else if (m[3]) {
      run.push(m[3]);
    }
  }
  flush();
  return terms;
}

export class Bm25Index {
  readonly size: number;
  private readonly termIds = new Map<string, number>();
  /** Per term: the documents it occurs in, and its BM25 weight in each (idf and length folded in). */
  private readonly postingDocs: Int32Array[] = [];
  private readonly postingWeights: Float32Array[] = [];

  constructor(texts: readonly string[]) {
    this.size = texts.length;
    const docs: number[][] = [];
    const counts: number[][] = [];
    const lengths = new Float64Array(texts.length);
    texts.forEach((text, d) => {
      const tf = new Map<number, number>();
      const terms = lexicalTerms(text);
      lengths[d] = terms.length;
      for (const t of terms) {
        let id = this.termIds.get(t);
        if (id === undefined) {
          id = this.termIds.size;
          this.termIds.set(t, id);
          docs.push([]);
          counts.push([]);
        }
        tf.set(id, (tf.get(id) ?? 0) + 1);
      }
      for (const [id, n] of tf) {
        docs[id]!.push(d);
        counts[id]!.push(n);
      }
    });
    const avg = lengths.reduce((a, b) => a + b, 0) / Math.max(1, texts.length) || 1;
    for (let id = 0; id < docs.length; id++) {
      const ds = docs[id]!;
      const idf = Math.log(1 + (this.size - ds.length + 0.5) / (ds.length + 0.5));
      this.postingDocs.push(Int32Array.from(ds));
      this.postingWeights.push(
        Float32Array.from(ds, (d, i) => {
          const n = counts[id]![i]!;
          return (idf * n * (K1 + 1)) / (n + K1 * (1 - B + (B * lengths[d]!) / avg));
        }),
      );
    }
  }

  /** The BM25 score of every document for a query (each distinct query term counted once), into `out`. */
  scores(query: string, out: Float32Array = new Float32Array(this.size)): Float32Array {
    out.fill(0);
    const seen = new Set<number>();
    for (const t of lexicalTerms(query)) {
      const id = this.termIds.get(t);
      if (id === undefined || seen.has(id)) continue;
      seen.add(id);
      const ds = this.postingDocs[id]!;
      const ws = this.postingWeights[id]!;
      for (let i = 0; i < ds.length; i++) out[ds[i]!]! += ws[i]!;
    }
    return out;
  }
}

/**
 * A hybrid's score: each system's scores over the whole corpus standardised (mean 0, variance 1 per
 * query), then summed with equal weight. Standardising puts cosines (0.7–0.9) and BM25 (0–60) on one
 * scale without a tuned constant; equal weight was the best of 0.25–2 on 120 jaquad-train articles,
 * chosen there and not on the set the results are reported on.
 */
export function fuseStandardized(a: Float32Array, b: Float32Array, out: Float32Array = new Float32Array(a.length)): Float32Array {
  const [ma, sa] = meanStd(a);
  const [mb, sb] = meanStd(b);
  for (let i = 0; i < a.length; i++) out[i] = (a[i]! - ma) / sa + (b[i]! - mb) / sb;
  return out;
}

function meanStd(x: Float32Array): [number, number] {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]!;
  const mean = s / x.length;
  let v = 0;
  for (let i = 0; i < x.length; i++) v += (x[i]! - mean) ** 2;
  // A query with no term in the corpus scores every document 0: that side then adds nothing.
  return [mean, Math.sqrt(v / x.length) || 1];
}
