import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalStore } from '../../artifacts/store.ts';
import { InvalidInputError } from '../../core/errors.ts';
import { filterQueries } from '../../activities/filterQueries.ts';
import { generateEvalQueries } from '../../activities/generateEvalQueries.ts';
import { generateQueries } from '../../activities/generateQueries.ts';
import { readQueries } from '../../activities/artifactKinds/queriesArtifact.ts';
import { baseModel } from '../eval/fixtures.ts';
import { runStage, tempStore } from '../support/runStage.ts';
import { EN_DOCS, JA_DOCS, type Doc, chunksArtifact, queriesArtifact, queryRow } from './fixtures.ts';

// The filter and eval-set stages on crafted queries (and ICT queries: deterministic and free), with
// the packaged base model for the round trip.

let store: LocalStore;
beforeAll(async () => {
  store = await tempStore('ef-llm-filter-');
});

describe('filterQueries stage', () => {
  it('removes duplicates, near duplicates, off-length and off-language queries, and reports each count', async () => {
    const { digest: chunks, rows: c } = await chunksArtifact(store, JA_DOCS);
    const [a, b] = [c[0]!.chunk_id, c[2]!.chunk_id];
    const queries = await queriesArtifact(store, [
      queryRow(a, '緑川ダムが完成したのは何年ですか？'),
      queryRow(b, '緑川ダムが完成したのは何年ですか?', 1),
      queryRow(a, '緑川ダムが完成したのは何年か？'),
      queryRow(a, '川'),
      queryRow(b, `${'茶畑の'.repeat(80)}場所は？`),
      queryRow(b, 'When does the tea harvest start?'),
      queryRow(b, '一番茶の摘み取りはいつ始まりますか？'),
    ]);
    const r = await runStage(filterQueries, { store, inputs: { queries, chunks } });
    expect(r.stats).toMatchObject({ input: 7, kept: 2, exactDuplicate: 1, nearDuplicate: 1, tooShort: 1, tooLong: 1, wrongLanguage: 1, roundTrip: 0 });
    expect(r.manifest.kind).toBe('queries');
    expect(r.manifest.meta).toMatchObject({ language: 'ja', removed: { wrongLanguage: 1 }, examples: { wrongLanguage: ['When does the tea harvest start?'] } });
    const kept = await readQueries(await store.open(r.digest));
    expect(kept.map((q) => q.text)).toEqual(['緑川ダムが完成したのは何年ですか？', '一番茶の摘み取りはいつ始まりますか？']);
  });

  it('round trip: keeps a query only if the base model ranks its own chunk in the top k', async () => {
    const docs: Doc[] = [
      ...EN_DOCS,
      { path: 'tea.md', paragraphs: ['Tea in the village grows on south-facing slopes; the first harvest starts in early May.'] },
      { path: 'library.md', paragraphs: ['The town library is closed on Mondays and keeps old maps in its local history room.'] },
    ];
    const { digest: chunks, rows: c } = await chunksArtifact(store, docs);
    const lighthouse = c[0]!.chunk_id;
    const library = c[3]!.chunk_id;
    const queries = await queriesArtifact(store, [
      queryRow(lighthouse, 'When was the Harrow Point lighthouse built?'),
      queryRow(library, 'Which day is the town library closed?'),
      // Written for the lighthouse chunk but about tea: the model cannot trace it back.
      queryRow(lighthouse, 'When does the first tea harvest start?'),
    ]);
    const model = await baseModel(store);
    const r = await runStage(filterQueries, { store, inputs: { queries, chunks, model }, params: { roundTripTopK: 1, language: 'en' } });
    expect(r.stats).toMatchObject({ input: 3, kept: 2, roundTrip: 1 });
    const kept = await readQueries(await store.open(r.digest));
    expect(kept.map((q) => q.text)).toEqual(['When was the Harrow Point lighthouse built?', 'Which day is the town library closed?']);

    await expect(runStage(filterQueries, { store, inputs: { queries, chunks }, params: { roundTripTopK: 1 } })).rejects.toThrow(InvalidInputError);
  });
});

describe('generateEvalQueries stage', () => {
  it('removes eval queries that duplicate training queries, exactly or nearly', async () => {
    const { digest: chunks, rows: c } = await chunksArtifact(store, JA_DOCS);
    // Training: ICT with seed 0. Eval: ICT with the same seed writes the very same queries...
    const train = await runStage(generateQueries, { store, inputs: { chunks }, params: { llm: { provider: 'ict' }, queriesPerChunk: 1 } });
    const trainRows = await readQueries(await store.open(train.digest));
    const same = await runStage(generateEvalQueries, {
      store,
      inputs: { chunks, queries: train.digest },
      params: { llm: { provider: 'ict' }, queriesPerChunk: 1, seed: 0 },
    });
    expect(same.stats).toMatchObject({ generated: 4, queries: 0, trainingDuplicate: 4 });
    expect(same.manifest.kind).toBe('evalQueries');

    // ...and near copies of them (a trailing word changed) are caught too, while other sentences stay.
    const nearCopies = await queriesArtifact(
      store,
      trainRows.map((q, i) => queryRow(q.chunk_id, q.text.replace(/。$/, 'だ。'), i)),
    );
    const other = await runStage(generateEvalQueries, {
      store,
      inputs: { chunks, queries: nearCopies },
      params: { llm: { provider: 'ict' }, queriesPerChunk: 2, seed: 0 },
    });
    const evalRows = await readQueries(await store.open(other.digest));
    expect(other.stats.trainingDuplicate).toBe(4);
    expect(evalRows).toHaveLength(4);
    const trainTexts = new Set(trainRows.map((q) => q.text));
    for (const q of evalRows) expect(trainTexts.has(q.text)).toBe(false);
    expect(new Set(evalRows.map((q) => q.chunk_id))).toEqual(new Set(c.map((x) => x.chunk_id)));
  });
});
