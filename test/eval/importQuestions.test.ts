import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readParquet } from '../../artifacts/parquet.ts';
import type { LocalStore } from '../../artifacts/store.ts';
import { EvalQuestionsError } from '../../core/errors.ts';
import { stringColumn, stringListColumn, numberColumn } from '../../activities/evaluation/tables.ts';
import { importQuestions } from '../../activities/importQuestions.ts';
import { filesArtifact, runStage, tempStore } from '../support/runStage.ts';
import { EXAMPLES, ingestDir, readChunks, windowChunks } from './fixtures.ts';
import { QUESTIONS_FILE } from '../../activities/artifactKinds/evalQuestionsArtifact.ts';

let store: LocalStore;
let documents: string;
let chunks: string;

beforeAll(async () => {
  store = await tempStore('ef-eval-import-');
  documents = await ingestDir(store, join(EXAMPLES, 'corpus'));
  chunks = await windowChunks(store, documents, 160, 80);
});

async function importFile(path: string) {
  const questions = await filesArtifact(store, path, 'file');
  return runStage(importQuestions, { store, inputs: { questions, documents, chunks } });
}

async function importLines(lines: string[]) {
  const path = join(store.root, `q-${Math.random().toString(36).slice(2)}.jsonl`);
  await writeFile(path, lines.join('\n'));
  return importFile(path);
}

describe('importQuestions', () => {
  it('resolves the example questions to the overlapping chunks that hold each answer', async () => {
    const { digest, manifest, stats } = await importFile(join(EXAMPLES, 'questions.jsonl'));
    expect(manifest.kind).toBe('evalQuestions');
    expect(stats).toMatchObject({ questions: 87, dropped: 0 });
    const where = (await store.open(digest)).file(QUESTIONS_FILE);
    const t = await readParquet(where);
    expect(t.schema.fields.map((f) => `${f.name}:${f.type}`)).toEqual(
      expect.arrayContaining(['query_id:Utf8', 'text:Utf8', 'path:Utf8', 'start:Int32', 'end:Int32', 'relevant_chunk_ids:List<Utf8>']),
    );
    const byId = new Map((await readChunks(store, chunks)).map((c) => [c.chunk_id, c]));
    const answers = stringColumn(t, 'answer', where);
    const relevant = stringListColumn(t, 'relevant_chunk_ids', where);
    let multi = 0;
    relevant.forEach((ids, i) => {
      expect(ids.length).toBeGreaterThan(0);
      if (ids.length > 1) multi++;
      // Every relevant chunk shows the answer (as the ingest stage normalised it).
      for (const id of ids) expect(byId.get(id)!.text).toContain(answers[i]!.normalize('NFKC'));
    });
    // 160-character windows every 80 characters: most short answers lie in two chunks.
    expect(multi).toBeGreaterThan(8);
    expect(numberColumn(t, 'start', where)[0]).toBe(105);
  });

  it('a bad line is an EvalQuestionsError naming file:line and the fix', async () => {
    const good = '{"id": "a", "question": "白書は何回目か", "doc": "01-概要.md", "start": 105, "end": 108}';
    const err = await importLines([good, '{"id": "b", "question": "q", "doc": "01-概要.md", "start": 5}']).catch((e) => e);
    expect(err).toBeInstanceOf(EvalQuestionsError);
    expect(err.where).toMatch(/q-\w+\.jsonl:2$/);
    expect(err.message).toMatch(/end/);
    expect(err.hint).toMatch(/"start", "end"/);
  });

  it('reports every problem at once: span outside the document, wrong answer, unknown doc, bad JSON', async () => {
    const err = await importLines([
      '{"id": "1", "question": "q", "doc": "01-概要.md", "start": 0, "end": 999999}',
      '{"id": "2", "question": "q", "doc": "01-概要.md", "start": 105, "end": 108, "answer": "十回目"}',
      '{"id": "3", "question": "q", "doc": "nope.md", "start": 0, "end": 3}',
      '{"id": "4", question}',
    ]).catch((e) => e);
    expect(err).toBeInstanceOf(EvalQuestionsError);
    expect(err.where).toMatch(/:1$/);
    expect(err.message).toMatch(/:1: span \[0, 999999\) lies outside 01-概要\.md/);
    expect(err.message).toMatch(/:2: span \[105, 108\) of 01-概要\.md reads "九回目", but answer is "十回目"/);
    expect(err.message).toMatch(/:3: doc "nope\.md" is not a document of the corpus/);
    expect(err.message).toMatch(/:4: not valid JSON/);
  });

  it('rejects duplicate ids', async () => {
    const line = '{"id": "a", "question": "q", "doc": "01-概要.md", "start": 105, "end": 108}';
    const err = await importLines([line, line]).catch((e) => e);
    expect(err).toBeInstanceOf(EvalQuestionsError);
    expect(err.message).toMatch(/:2: duplicate id "a" \(first on line 1\)/);
  });
});
