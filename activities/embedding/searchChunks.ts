import type { ArtifactStore } from '../../artifacts/store.ts';
import { ExactIndex } from '../evaluation/search.ts';
import { readChunkTexts } from '../artifactKinds/chunksArtifact.ts';
import { Encoder } from './encoder.ts';
import { embedWithMemo, openEmbeddingMemo } from './memoEmbed.ts';
import type { ModelVariant } from '../artifactKinds/modelArtifact.ts';

// `embedflow search`: one question against a run's chunks, per model. The corpus goes through the
// shared embedding memo, so chunks the run's mining or evaluation embedded cost nothing here, and a
// second question costs one query embedding.

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
}

export async function searchChunks(store: ArtifactStore, opts: SearchChunksOptions): Promise<ModelHits[]> {
  const chunks = await readChunkTexts(await store.open(opts.chunks));
  const variant = opts.variant ?? 'fp32';
  const out: ModelHits[] = [];
  for (const m of opts.models) {
    const reader = await store.open(m.digest);
    const encoder = await Encoder.load(reader.dir, { variant });
    const memo = await openEmbeddingMemo(store, m.digest, variant);
    try {
      const corpus = await embedWithMemo(encoder, memo, chunks.map((c) => c.text), { kind: 'passage' });
      const query = await embedWithMemo(encoder, memo, [opts.question], { kind: 'query' });
      const found = new ExactIndex(corpus.embeddings.data, corpus.embeddings.dim).search(query.embeddings.data, opts.k);
      const hits = Array.from(found.indices, (row, i) => ({
        rank: i + 1,
        score: found.scores[i] as number,
        chunkId: chunks[row]!.chunkId,
        text: chunks[row]!.text,
      }));
      out.push({ ...m, name: encoder.info.name, hits, corpusMemoHits: corpus.memoHits });
    } finally {
      await memo.close();
      await encoder.release();
    }
  }
  return out;
}
