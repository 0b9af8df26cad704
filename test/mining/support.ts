import { sha256 } from '../../artifacts/hash.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import { CHUNKS_FILE, writeChunks } from '../../activities/artifactKinds/chunksArtifact.ts';
import { QUERIES_FILE, writeQueries } from '../../activities/artifactKinds/queriesArtifact.ts';

/** Publish a `chunks` artifact with the contract's columns; ids are given so tests can name chunks. */
export async function publishChunks(store: ArtifactStore, chunks: Array<{ id: string; text: string }>): Promise<string> {
  const w = await store.newWriter();
  let at = 0;
  const starts = chunks.map((c) => {
    const s = at;
    at += c.text.length;
    return s;
  });
  await writeChunks(
    await w.file(CHUNKS_FILE),
    chunks.map((c, i) => ({
      chunk_id: c.id,
      doc_id: sha256('doc.md').slice(0, 16),
      path: 'doc.md',
      ordinal: i,
      text: c.text,
      start: starts[i]!,
      end: starts[i]! + c.text.length,
      heading: '',
      page: null,
      tokens: c.text.length,
    })),
  );
  return (await store.publish(w, { kind: 'chunks', rows: { [CHUNKS_FILE]: chunks.length } })).digest;
}

/** Publish a `queries` artifact (as the query-generation stage writes it). */
export async function publishQueries(store: ArtifactStore, queries: Array<{ id: string; chunk: string; text: string }>): Promise<string> {
  const w = await store.newWriter();
  await writeQueries(
    await w.file(QUERIES_FILE),
    queries.map((q) => ({
      query_id: q.id,
      chunk_id: q.chunk,
      text: q.text,
      style: 'question',
      provider: 'test',
      model: 'hand-written',
      prompt_hash: '',
      latency_ms: 0,
      tokens: q.text.length,
    })),
  );
  return (await store.publish(w, { kind: 'queries', rows: { [QUERIES_FILE]: queries.length } })).digest;
}
