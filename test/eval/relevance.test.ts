import { describe, expect, it } from 'vitest';
import { ChunkSpanIndex, relevantChunks } from '../../activities/evaluation/relevance.ts';

// Document of 300 characters, chunks of 100 overlapping by 50: [0,100) [50,150) [100,200) [150,250) [200,300).
const chunks = [0, 50, 100, 150, 200].map((s, i) => ({ chunk_id: `c${i}`, doc_id: 'd1', start: s, end: s + 100 }));
const other = { chunk_id: 'x0', doc_id: 'd2', start: 0, end: 1000 };

describe('span-to-chunk relevance with overlapping chunks', () => {
  const index = new ChunkSpanIndex([other, ...chunks].reverse());

  it('a span inside the overlap of two chunks makes both relevant', () => {
    expect(index.relevantFor('d1', 60, 90)).toEqual({ chunkIds: ['c0', 'c1'], coverage: 'covered' });
  });

  it('a span covered by one chunk only', () => {
    expect(index.relevantFor('d1', 10, 40)).toEqual({ chunkIds: ['c0'], coverage: 'covered' });
  });

  it('span boundaries are inclusive of the chunk edges ([start, end) semantics)', () => {
    expect(index.relevantFor('d1', 100, 150)).toEqual({ chunkIds: ['c1', 'c2'], coverage: 'covered' });
    // [90, 101) crosses c0's end (100) and starts before c2: only c1 covers it.
    expect(index.relevantFor('d1', 90, 101).chunkIds).toEqual(['c1']);
  });

  it('a span no chunk covers falls back to the chunks holding part of it', () => {
    // Without overlap: [0,100) [100,200); the span [95,105) straddles the boundary.
    const plain = [
      { chunk_id: 'p0', doc_id: 'd', start: 0, end: 100 },
      { chunk_id: 'p1', doc_id: 'd', start: 100, end: 200 },
    ];
    expect(relevantChunks(plain, 95, 105)).toEqual({ chunkIds: ['p0', 'p1'], coverage: 'partial' });
  });

  it('chunks of other documents never count', () => {
    expect(index.relevantFor('d1', 0, 10).chunkIds).not.toContain('x0');
    expect(index.relevantFor('nope', 0, 10)).toEqual({ chunkIds: [], coverage: 'none' });
  });
});
