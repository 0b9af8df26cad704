import type { ArtifactStore } from '../../artifacts/store.ts';
import { ExactIndex, type SearchHits, topK } from '../evaluation/search.ts';
import { Bm25Index, fuseStandardized } from '../lexical/bm25.ts';
import { readChunkTexts } from '../artifactKinds/chunksArtifact.ts';
import { Encoder } from './encoder.ts';
import { embedWithMemo, openEmbeddingMemo } from './memoEmbed.ts';
import type { ModelVariant } from '../artifactKinds/modelArtifact.ts';

// `embedflow search`: one question against a run's chunks, per model. The corpus goes through the
// shared embedding memo, so chunks the run's mining or evaluation embedded cost nothing here, and a
// second question costs one query embedding. With `lexical`, BM25 (no model) and the last model fused
// with it are searched as the evaluation's 'bm25' and '<model>+bm25' systems are.

export interface SearchModel {
  /** How the model is shown, e.g. 'base' or 'fine-tuned'. */
  label: string;
  digest: string;
}

export interface ChunkHit {
  rank: number;
  score: number;
  chunkId: string;
  text: string;
}

export interface ModelHits extends SearchModel {
  name: string;
  hits: ChunkHit[];
  /** Chunks taken from the memo rather than embedded now. */
  corpusMemoHits: number;
}

export interface SearchChunksOptions {
  models: SearchModel[];
  /** A `chunks` artifact. */
  chunks: string;
  question: string;
  k: number;
  variant?: ModelVariant;
  /** Also search with BM25 (no model), and with the last model fused with BM25, as the evaluation scores them. */
  lexical?: boolean;
}

export async function searchChunks(store: ArtifactStore, opts: SearchChunksOptions): Promise<ModelHits[]> {
  const chunks = await readChunkTexts(await store.open(opts.chunks));
  const variant = opts.variant ?? 'fp32';
  const out: ModelHits[] = [];
  const lexical = opts.lexical ? new Bm25Index(chunks.map((c) => c.text)) : undefined;
  const lexicalScores = lexical?.scores(opts.question);
  const hitsOf = (found: SearchHits) =>
    Array.from(found.indices, (row, i) => ({ rank: i + 1, score: found.scores[i] as number, chunkId: chunks[row]!.chunkId, text: chunks[row]!.text }));
  let hybrid: ModelHits | undefined;
  for (const m of opts.models) {
    const reader = await store.open(m.digest);
    const encoder = await Encoder.load(reader.dir, { variant });
    const memo = await openEmbeddingMemo(store, m.digest, variant);
    try {
      const corpus = await embedWithMemo(encoder, memo, chunks.map((c) => c.text), { kind: 'passage' });
      const query = await embedWithMemo(encoder, memo, [opts.question], { kind: 'query' });
      const index = new ExactIndex(corpus.embeddings.data, corpus.embeddings.dim);
      const hits = hitsOf(index.search(query.embeddings.data, opts.k));
      out.push({ ...m, name: encoder.info.name, hits, corpusMemoHits: corpus.memoHits });
      if (lexicalScores) {
        const fused = fuseStandardized(index.scores(query.embeddings.data), lexicalScores);
        hybrid = { label: `${m.label}+bm25`, digest: m.digest, name: `${encoder.info.name} + BM25`, hits: hitsOf(topK(fused, Math.min(opts.k, fused.length))), corpusMemoHits: 0 };
      }
    } finally {
      await memo.close();
      await encoder.release();
    }
  }
  if (lexicalScores) {
    out.push({ label: 'bm25', digest: opts.chunks, name: 'BM25, no model', hits: hitsOf(topK(lexicalScores, Math.min(opts.k, lexicalScores.length))), corpusMemoHits: 0 });
    if (hybrid) out.push(hybrid);
  }
  return out;
}
