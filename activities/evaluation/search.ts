/**
 * Exact (brute-force) cosine search over the whole chunk corpus, one query at a time, as a search
 * service answers them: the evaluation times each query's embed + search. Evaluation must not depend
 * on an approximate index's recall, and a few thousand chunks take about a millisecond per query.
 * (Batch top-k over many queries at once, for mining, is embedding/search.ts.)
 */

export interface SearchHits {
  /** Row indices into the corpus, best first. */
  indices: Int32Array;
  scores: Float32Array;
}

/** Scale each row of a row-major matrix to unit length in place (zero rows stay zero). */
export function normalizeRows(data: Float32Array, dim: number): Float32Array {
  for (let off = 0; off < data.length; off += dim) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += data[off + j]! * data[off + j]!;
    if (s > 0) {
      const inv = 1 / Math.sqrt(s);
      for (let j = 0; j < dim; j++) data[off + j]! *= inv;
    }
  }
  return data;
}

export class ExactIndex {
  readonly dim: number;
  readonly size: number;
  private readonly data: Float32Array;
  private readonly scratch: Float32Array;

  /** `vectors`: row-major, one row per corpus item; normalised here (a copy), so scores are cosines. */
  constructor(vectors: Float32Array, dim: number) {
    if (vectors.length % dim !== 0) throw new RangeError('ExactIndex: vector data is not a whole number of rows');
    this.dim = dim;
    this.size = vectors.length / dim;
    this.data = normalizeRows(Float32Array.from(vectors), dim);
    this.scratch = new Float32Array(this.size);
  }

  /** The k best rows for a query vector; ties go to the lower row index, so results are deterministic. */
  search(query: Float32Array, k: number): SearchHits {
    return topK(this.scores(query), Math.min(k, this.size));
  }

  /** The cosine of every row with a query vector (a buffer the next call overwrites). */
  scores(query: Float32Array): Float32Array {
    const { dim, size, data } = this;
    let qn = 0;
    for (let j = 0; j < dim; j++) qn += query[j]! * query[j]!;
    const inv = qn > 0 ? 1 / Math.sqrt(qn) : 0;
    const scores = this.scratch;
    for (let i = 0, off = 0; i < size; i++, off += dim) {
      let s = 0;
      for (let j = 0; j < dim; j++) s += data[off + j]! * query[j]!;
      scores[i] = s * inv;
    }
    return scores;
  }
}

/** Indices of the k largest scores, best first (lower index wins ties), via a size-k min-heap. */
export function topK(scores: Float32Array, k: number): SearchHits {
  const heap = new Int32Array(k);
  let n = 0;
  // "a is worse than b": lower score, or equal score and higher index.
  const worse = (a: number, b: number) => scores[a]! < scores[b]! || (scores[a] === scores[b] && a > b);
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && worse(heap[l]!, heap[m]!)) m = l;
      if (r < n && worse(heap[r]!, heap[m]!)) m = r;
      if (m === i) return;
      const t = heap[i]!;
      heap[i] = heap[m]!;
      heap[m] = t;
      i = m;
    }
  };
  for (let i = 0; i < scores.length && k > 0; i++) {
    if (n < k) {
      heap[n] = i;
      for (let c = n++; c > 0; ) {
        const p = (c - 1) >> 1;
        if (!worse(heap[c]!, heap[p]!)) break;
        const t = heap[c]!;
        heap[c] = heap[p]!;
        heap[p] = t;
        c = p;
      }
    } else if (worse(heap[0]!, i)) {
      heap[0] = i;
      siftDown(0);
    }
  }
  const indices = Array.from(heap.subarray(0, n)).sort((a, b) => (worse(a, b) ? 1 : worse(b, a) ? -1 : 0));
  return { indices: Int32Array.from(indices), scores: Float32Array.from(indices, (i) => scores[i]!) };
}
