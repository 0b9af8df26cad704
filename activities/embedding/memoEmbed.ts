import { sha256 } from '../../artifacts/hash.ts';
import type { Memo } from '../../artifacts/memo.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import type { ModelVariant } from '../artifactKinds/modelArtifact.ts';
import type { Embeddings, Encoder, TextKind } from './encoder.ts';

/**
 * The one memo key scheme for embeddings: namespace per (model artifact digest, ONNX variant), key =
 * sha256 of the text the model sees (prefix included). A text embedded once, by any stage, is never
 * run through that model again; a grown corpus pays only for its new texts.
 */
export function embeddingMemoNamespace(modelDigest: string, variant: ModelVariant): string {
  return `embeddings/${modelDigest}/${variant}`;
}

export async function openEmbeddingMemo(store: ArtifactStore, modelDigest: string, variant: ModelVariant): Promise<Memo<string>> {
  return store.memo<string>(embeddingMemoNamespace(modelDigest, variant));
}

export interface MemoEmbedOptions {
  kind: TextKind;
  batchSize?: number;
  /** Texts embedded between memo flushes (a crash loses at most this many). */
  flushEvery?: number;
  signal?: AbortSignal;
  /** Progress in distinct texts (memo hits count as done at once). */
  onProgress?: (done: number, total: number) => void;
}

export interface MemoEmbedResult {
  embeddings: Embeddings;
  /** Distinct texts served from the memo (the encoder's modelCalls counts what it ran). */
  memoHits: number;
}

/** Embed texts (duplicates embedded once), taking what the memo has and adding what it lacks. */
export async function embedWithMemo(
  encoder: Encoder,
  memo: Memo<string>,
  texts: readonly string[],
  opts: MemoEmbedOptions,
): Promise<MemoEmbedResult> {
  const dim = encoder.dim;
  const data = new Float32Array(texts.length * dim);
  const keys = texts.map((t) => sha256(encoder.prefixed(t, opts.kind)));
  const rowsByKey = new Map<string, number[]>();
  keys.forEach((k, i) => {
    const rows = rowsByKey.get(k);
    if (rows) rows.push(i);
    else rowsByKey.set(k, [i]);
  });
  const fill = (key: string, vector: Float32Array) => {
    for (const i of rowsByKey.get(key) as number[]) data.set(vector, i * dim);
  };

  const missing: string[] = [];
  let memoHits = 0;
  for (const key of rowsByKey.keys()) {
    const stored = memo.get(key);
    if (stored === undefined) {
      missing.push(key);
      continue;
    }
    const vector = decodeVector(stored);
    if (vector.length !== dim) {
      // Written by a model of another width under the same digest: impossible unless tampered with.
      missing.push(key);
      continue;
    }
    fill(key, vector);
    memoHits++;
  }

  const flushEvery = opts.flushEvery ?? 512;
  const total = rowsByKey.size;
  opts.onProgress?.(memoHits, total);
  for (let s = 0; s < missing.length; s += flushEvery) {
    opts.signal?.throwIfAborted();
    const group = missing.slice(s, s + flushEvery);
    // The encoder applies the prefix itself, so hand it the caller's original text of each key.
    const groupTexts = group.map((k) => texts[(rowsByKey.get(k) as number[])[0] as number] as string);
    const emb = await encoder.encode(groupTexts, {
      kind: opts.kind,
      batchSize: opts.batchSize,
      signal: opts.signal,
      onProgress: (done) => opts.onProgress?.(memoHits + s + done, total),
    });
    group.forEach((key, j) => {
      const vector = emb.data.subarray(j * dim, (j + 1) * dim);
      fill(key, vector);
      memo.put(key, encodeVector(vector));
    });
    await memo.flush();
  }
  return { embeddings: { dim, count: texts.length, data }, memoHits };
}

/** float32 little-endian bytes as base64: a quarter of the JSON-number size, and bit-exact. */
export function encodeVector(v: Float32Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}

export function decodeVector(s: string): Float32Array {
  const buf = Buffer.from(s, 'base64');
  const out = new Float32Array(buf.byteLength / 4);
  new Uint8Array(out.buffer).set(buf);
  return out;
}
