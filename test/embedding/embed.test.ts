import { beforeAll, describe, expect, it } from 'vitest';
import { embed } from '../../activities/embed.ts';
import { readEmbeddings } from '../../activities/embedding/tables.ts';
import type { LocalStore } from '../../artifacts/store.ts';
import { baseModel } from '../eval/fixtures.ts';
import { publishChunks, publishQueries } from '../mining/support.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { exampleParagraphs } from './support.ts';

let store: LocalStore;
let model: string;
let paragraphs: string[];

beforeAll(async () => {
  store = await tempStore();
  model = await baseModel(store);
  paragraphs = await exampleParagraphs();
});

async function embedded(digest: string) {
  const reader = await store.open(digest);
  return readEmbeddings(reader.file('embeddings.parquet'));
}

describe('embed stage', () => {
  it('a grown corpus runs only its new texts through the model; old vectors are reused bit for bit', async () => {
    const first = paragraphs.slice(0, 10).map((text, i) => ({ id: `c${i}`, text }));
    // A repeated text (same paragraph under two ids) is embedded once.
    first.push({ id: 'c-copy', text: first[0]!.text });
    const v1 = await runStage(embed, { store, inputs: { model, chunks: await publishChunks(store, first) } });
    expect(v1.stats).toMatchObject({ texts: 11, embeddingsComputed: 10, memoHits: 0, dim: 384 });

    const grown = [...first, ...paragraphs.slice(10, 14).map((text, i) => ({ id: `n${i}`, text }))];
    const v2 = await runStage(embed, { store, inputs: { model, chunks: await publishChunks(store, grown) } });
    expect(v2.stats).toMatchObject({ texts: 15, embeddingsComputed: 4, memoHits: 10 });

    const a = await embedded(v1.digest);
    const b = await embedded(v2.digest);
    expect(b.ids).toEqual(grown.map((c) => c.id));
    expect(b.embeddings.dim).toBe(384);
    expect(Array.from(b.embeddings.data.subarray(0, 11 * 384))).toEqual(Array.from(a.embeddings.data));
    // Unit vectors (the model normalises), and the copy got its original's vector.
    const norm = Math.hypot(...b.embeddings.data.subarray(14 * 384, 15 * 384));
    expect(norm).toBeCloseTo(1, 4);
    expect(Array.from(b.embeddings.data.subarray(10 * 384, 11 * 384))).toEqual(Array.from(b.embeddings.data.subarray(0, 384)));
  });

  it('embeds queries too, and refuses to be given both inputs', async () => {
    const queries = await publishQueries(store, [{ id: 'q1', chunk: 'c0', text: '水質は何地点で測定しているか' }]);
    const r = await runStage(embed, { store, inputs: { model, queries } });
    expect(r.stats).toMatchObject({ texts: 1, embeddingsComputed: 1 });
    expect(r.manifest.meta).toMatchObject({ kind: 'query' });
    const chunks = await publishChunks(store, [{ id: 'c0', text: paragraphs[0]! }]);
    await expect(runStage(embed, { store, inputs: { model, queries, chunks } })).rejects.toThrow(/exactly one of the inputs/);
  });
});
