import { Table } from 'apache-arrow';
import { sha256 } from '../../artifacts/hash.ts';
import { writeParquet } from '../../artifacts/parquet.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import { float64, int32, utf8 } from '../../activities/evaluation/tables.ts';
import { CHUNKS_FILE } from '../../activities/artifactKinds/chunksArtifact.ts';
import { QUERIES_FILE } from '../../activities/artifactKinds/queriesArtifact.ts';

/** Publish a `chunks` artifact with the contract's columns; ids are given so tests can name chunks. */
export async function publishChunks(store: ArtifactStore, chunks: Array<{ id: string; text: string }>): Promise<string> {
  const w = await store.newWriter();
  let at = 0;
  const starts = chunks.map((c) => {
    const s = at;
    at += c.text.length;
    return s;
  });
  await writeParquet(
    await w.file(CHUNKS_FILE),
    new Table({
      chunk_id: utf8(chunks.map((c) => c.id)),
      doc_id: utf8(chunks.map(() => sha256('doc.md').slice(0, 16))),
      path: utf8(chunks.map(() => 'doc.md')),
      ordinal: int32(chunks.map((_, i) => i)),
      text: utf8(chunks.map((c) => c.text)),
      start: int32(starts),
      end: int32(chunks.map((c, i) => (starts[i] as number) + c.text.length)),
      heading: utf8(chunks.map(() => '')),
      page: int32(chunks.map(() => null)),
      tokens: int32(chunks.map((c) => c.text.length)),
    }),
  );
  return (await store.publish(w, { kind: 'chunks', rows: { [CHUNKS_FILE]: chunks.length } })).digest;
}

/** Publish a `queries` artifact (as the query-generation stage writes it). */
export async function publishQueries(store: ArtifactStore, queries: Array<{ id: string; chunk: string; text: string }>): Promise<string> {
  const w = await store.newWriter();
  await writeParquet(
    await w.file(QUERIES_FILE),
    new Table({
      query_id: utf8(queries.map((q) => q.id)),
      chunk_id: utf8(queries.map((q) => q.chunk)),
      text: utf8(queries.map((q) => q.text)),
      style: utf8(queries.map(() => 'question')),
      provider: utf8(queries.map(() => 'test')),
      model: utf8(queries.map(() => 'hand-written')),
      prompt_hash: utf8(queries.map(() => '')),
      latency_ms: float64(queries.map(() => 0)),
      tokens: int32(queries.map((q) => q.text.length)),
    }),
  );
  return (await store.publish(w, { kind: 'queries', rows: { [QUERIES_FILE]: queries.length } })).digest;
}
