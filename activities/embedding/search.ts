import { availableParallelism } from 'node:os';
import type * as Ort from 'onnxruntime-node';
import { loadOnnxRuntime, loadUsearch } from '../heavyLibs.ts';
import type { Embeddings } from './encoder.ts';
import { topkGraphBytes } from './topkGraph.ts';

/** Per query, its k best corpus rows by inner product (cosine, for unit vectors), best first. */
export interface TopK {
  k: number;
  count: number;
  /** count × k scores; -Infinity where the corpus has fewer than k rows. */
  scores: Float32Array;
  /** count × k corpus row numbers; -1 where the corpus has fewer than k rows. */
  indices: Int32Array;
}

export type SearchMethod = 'exact' | 'approximate';

export interface SearchOptions {
  /** 'auto' (default): exact up to `exactMaxPairs` query×corpus pairs, approximate (usearch HNSW) above. */
  method?: SearchMethod | 'auto';
  exactMaxPairs?: number;
  /** Most similarity scores held at once (floats); bounds memory whatever the sizes. */
  maxBlockScores?: number;
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Exact search does ~4e7 query×chunk pairs/s on 2 cores (GEMM); usearch's HNSW builds at a few hundred
 * vectors/s there, so it only pays off for corpora in the millions. Measured in bench/embeddings.ts.
 */
export const DEFAULT_EXACT_MAX_PAIRS = 5e10;

export function chooseMethod(nq: number, nc: number, opts: SearchOptions = {}): SearchMethod {
  const m = opts.method ?? 'auto';
  if (m !== 'auto') return m;
  return nq * nc <= (opts.exactMaxPairs ?? DEFAULT_EXACT_MAX_PAIRS) ? 'exact' : 'approximate';
}

export async function topK(queries: Embeddings, corpus: Embeddings, k: number, opts: SearchOptions = {}): Promise<TopK> {
  if (queries.dim !== corpus.dim) throw new RangeError(`query dim ${queries.dim} ≠ corpus dim ${corpus.dim}`);
  return chooseMethod(queries.count, corpus.count, opts) === 'exact'
    ? exactTopK(queries, corpus, k, opts)
    : approximateTopK(queries, corpus, k, opts);
}

function emptyTopK(count: number, k: number): TopK {
  return { k, count, scores: new Float32Array(count * k).fill(-Infinity), indices: new Int32Array(count * k).fill(-1) };
}

/**
 * Exact search, blocked over queries and corpus so at most `maxBlockScores` scores exist at a time;
 * each block is a GEMM + TopK in onnxruntime, and blocks are merged per query.
 */
export async function exactTopK(queries: Embeddings, corpus: Embeddings, k: number, opts: SearchOptions = {}): Promise<TopK> {
  const { dim } = queries;
  const out = emptyTopK(queries.count, k);
  if (queries.count === 0 || corpus.count === 0 || k === 0) return out;
  const budget = opts.maxBlockScores ?? 16 * 1024 * 1024;
  const corpusBlock = Math.max(1, Math.min(corpus.count, Math.floor(budget / 64)));
  const queryBlock = Math.max(1, Math.min(queries.count, 2048, Math.floor(budget / corpusBlock)));
  const ort = await loadOnnxRuntime();
  const session = await ort.InferenceSession.create(topkGraphBytes(), {
    intraOpNumThreads: opts.threads ?? availableParallelism(),
    interOpNumThreads: 1,
  });
  try {
    const corpusTensors: Array<{ start: number; tensor: Ort.Tensor; kb: number }> = [];
    for (let c0 = 0; c0 < corpus.count; c0 += corpusBlock) {
      const n = Math.min(corpusBlock, corpus.count - c0);
      const kb = Math.min(k, n);
      corpusTensors.push({ start: c0, tensor: new ort.Tensor('float32', corpus.data.subarray(c0 * dim, (c0 + n) * dim), [n, dim]), kb });
    }
    const merged = new Float32Array(2 * k);
    const mergedIdx = new Int32Array(2 * k);
    for (let q0 = 0; q0 < queries.count; q0 += queryBlock) {
      opts.signal?.throwIfAborted();
      const nq = Math.min(queryBlock, queries.count - q0);
      const qt = new ort.Tensor('float32', queries.data.subarray(q0 * dim, (q0 + nq) * dim), [nq, dim]);
      for (const block of corpusTensors) {
        const kt = new ort.Tensor('int64', BigInt64Array.of(BigInt(block.kb)), [1]);
        const r = await session.run({ queries: qt, corpus: block.tensor, k: kt });
        const s = r.scores!.data as Float32Array;
        const ix = r.indices!.data as BigInt64Array;
        for (let q = 0; q < nq; q++) {
          mergeInto(out, q0 + q, s, ix, q * block.kb, block.kb, block.start, merged, mergedIdx);
        }
        r.scores!.dispose();
        r.indices!.dispose();
      }
      opts.onProgress?.(q0 + nq, queries.count);
    }
  } finally {
    await session.release();
  }
  return out;
}

/** Merge a block's sorted candidates into row `row` of `out` (both sorted descending), keeping k. */
function mergeInto(
  out: TopK,
  row: number,
  scores: Float32Array,
  indices: BigInt64Array,
  from: number,
  n: number,
  offset: number,
  tmpS: Float32Array,
  tmpI: Int32Array,
): void {
  const k = out.k;
  const base = row * k;
  let a = 0;
  let b = 0;
  for (let i = 0; i < k; i++) {
    const sa = out.scores[base + a] as number;
    const sb = b < n ? (scores[from + b] as number) : -Infinity;
    if (a < k && sa >= sb) {
      tmpS[i] = sa;
      tmpI[i] = out.indices[base + a] as number;
      a++;
    } else if (b < n) {
      tmpS[i] = sb;
      tmpI[i] = Number(indices[from + b]) + offset;
      b++;
    } else {
      tmpS[i] = -Infinity;
      tmpI[i] = -1;
    }
  }
  out.scores.set(tmpS.subarray(0, k), base);
  out.indices.set(tmpI.subarray(0, k), base);
}

/** usearch HNSW over the corpus (inner product); recall is high but not guaranteed. */
export async function approximateTopK(queries: Embeddings, corpus: Embeddings, k: number, opts: SearchOptions = {}): Promise<TopK> {
  const out = emptyTopK(queries.count, k);
  if (queries.count === 0 || corpus.count === 0 || k === 0) return out;
  const threads = opts.threads ?? availableParallelism();
  const usearch = await loadUsearch();
  const index = new usearch.Index({
    dimensions: corpus.dim,
    metric: usearch.MetricKind.IP,
    quantization: usearch.ScalarKind.F32,
    connectivity: 16,
    expansion_add: 128,
    expansion_search: Math.max(128, 3 * k),
    multi: false,
  });
  const keys = new BigUint64Array(corpus.count);
  for (let i = 0; i < corpus.count; i++) keys[i] = BigInt(i);
  index.add(keys, corpus.data, threads);
  const block = 4096;
  for (let q0 = 0; q0 < queries.count; q0 += block) {
    opts.signal?.throwIfAborted();
    const nq = Math.min(block, queries.count - q0);
    const m = index.search(queries.data.subarray(q0 * queries.dim, (q0 + nq) * queries.dim), k, threads) as unknown as {
      keys: BigUint64Array;
      distances: Float32Array;
      counts: BigUint64Array;
    };
    for (let q = 0; q < nq; q++) {
      const found = Number(m.counts[q]);
      for (let j = 0; j < found; j++) {
        out.indices[(q0 + q) * k + j] = Number(m.keys[q * k + j]);
        // usearch's inner-product distance is 1 − dot.
        out.scores[(q0 + q) * k + j] = 1 - (m.distances[q * k + j] as number);
      }
    }
    opts.onProgress?.(q0 + nq, queries.count);
  }
  return out;
}
