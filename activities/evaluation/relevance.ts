/**
 * Which chunks answer a human question whose gold is a span of its document. A chunk is relevant
 * when it covers the whole span [start, end) (offsets into the document's normalised text); with
 * overlapping chunks several may, and each counts. When no single chunk covers it (the span
 * straddles a chunk boundary), every chunk holding part of it is relevant instead and the question
 * is marked 'partial', so the question still counts and the report can say how often this happened.
 */

export interface ChunkSpan {
  chunk_id: string;
  doc_id: string;
  start: number;
  end: number;
}

export type Coverage = 'covered' | 'partial' | 'none';

export interface SpanRelevance {
  chunkIds: string[];
  coverage: Coverage;
}

/** Chunks grouped by document, in document order, for span lookups. */
export class ChunkSpanIndex {
  private readonly byDoc = new Map<string, ChunkSpan[]>();

  constructor(chunks: Iterable<ChunkSpan>) {
    for (const c of chunks) {
      const list = this.byDoc.get(c.doc_id);
      if (list) list.push(c);
      else this.byDoc.set(c.doc_id, [c]);
    }
    for (const list of this.byDoc.values()) list.sort((a, b) => a.start - b.start || a.end - b.end);
  }

  chunksOf(docId: string): readonly ChunkSpan[] {
    return this.byDoc.get(docId) ?? [];
  }

  relevantFor(docId: string, start: number, end: number): SpanRelevance {
    return relevantChunks(this.chunksOf(docId), start, end);
  }
}

export function relevantChunks(docChunks: readonly ChunkSpan[], start: number, end: number): SpanRelevance {
  const covering = docChunks.filter((c) => c.start <= start && c.end >= end);
  if (covering.length > 0) return { chunkIds: covering.map((c) => c.chunk_id), coverage: 'covered' };
  const overlapping = docChunks.filter((c) => c.start < end && c.end > start);
  if (overlapping.length > 0) return { chunkIds: overlapping.map((c) => c.chunk_id), coverage: 'partial' };
  return { chunkIds: [], coverage: 'none' };
}
