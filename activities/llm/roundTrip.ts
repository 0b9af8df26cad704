import type { ArtifactReader, ArtifactStore } from '../../artifacts/store.ts';
import { Encoder, row } from '../embedding/encoder.ts';
import { embedWithMemo, openEmbeddingMemo } from '../embedding/memoEmbed.ts';
import { ExactIndex } from '../evaluation/search.ts';
import type { ChunkText } from '../artifactKinds/chunksArtifact.ts';
import type { QueryRow } from '../artifactKinds/queriesArtifact.ts';

/**
 * Round-trip consistency: keep a generated query only if the base model already ranks the chunk it
 * was written for among the top k of the whole corpus. Queries the model cannot connect to their
 * chunk are usually vague or about something else. Embeddings go through the shared embedding memo,
 * so the mining stage later reuses them. A chunk whose text occurs twice counts as found either way.
 */
export async function roundTripConsistent(
  model: ArtifactReader,
  store: ArtifactStore,
  chunks: readonly ChunkText[],
  queries: readonly QueryRow[],
  topK: number,
  opts: { signal?: AbortSignal; onProgress?: (done: number, total: number, message: string) => void } = {},
): Promise<boolean[]> {
  if (queries.length === 0) return [];
  const encoder = await Encoder.load(model.dir);
  const memo = await openEmbeddingMemo(store, model.digest, 'fp32');
  try {
    const total = chunks.length + queries.length;
    const c = await embedWithMemo(encoder, memo, chunks.map((x) => x.text), {
      kind: 'passage',
      signal: opts.signal,
      onProgress: (done) => opts.onProgress?.(done, total, 'embedding chunks'),
    });
    const q = await embedWithMemo(encoder, memo, queries.map((x) => x.text), {
      kind: 'query',
      signal: opts.signal,
      onProgress: (done) => opts.onProgress?.(chunks.length + done, total, 'embedding queries'),
    });
    const index = new ExactIndex(c.embeddings.data, c.embeddings.dim);
    const textOf = new Map(chunks.map((x) => [x.chunkId, x.text]));
    return queries.map((query, i) => {
      const own = textOf.get(query.chunk_id);
      const hits = index.search(row(q.embeddings, i), topK);
      return Array.from(hits.indices).some((j) => chunks[j]!.text === own);
    });
  } finally {
    await memo.close();
    await encoder.release();
  }
}
