import { Table } from 'apache-arrow';
import { readParquet, writeParquet } from '../../artifacts/parquet.ts';
import type { ArtifactReader } from '../../artifacts/store.ts';
import type { Coverage } from '../evaluation/relevance.ts';
import { int32, stringColumn, stringListColumn, utf8, utf8List } from '../evaluation/tables.ts';

/** questions.parquet of an `evalQuestions` artifact: human questions with the chunks their gold spans fall in. */
export const QUESTIONS_FILE = 'questions.parquet';

export interface EvalQuestion {
  query_id: string;
  text: string;
  path: string;
  start: number;
  end: number;
  relevant_chunk_ids: string[];
  doc_id: string;
  text_start: number;
  text_end: number;
  answer: string | null;
  coverage: Coverage;
}

export function questionsTable(qs: EvalQuestion[]): Table {
  return new Table({
    query_id: utf8(qs.map((q) => q.query_id)),
    text: utf8(qs.map((q) => q.text)),
    path: utf8(qs.map((q) => q.path)),
    start: int32(qs.map((q) => q.start)),
    end: int32(qs.map((q) => q.end)),
    relevant_chunk_ids: utf8List(qs.map((q) => q.relevant_chunk_ids)),
    doc_id: utf8(qs.map((q) => q.doc_id)),
    text_start: int32(qs.map((q) => q.text_start)),
    text_end: int32(qs.map((q) => q.text_end)),
    answer: utf8(qs.map((q) => q.answer)),
    coverage: utf8(qs.map((q) => q.coverage)),
  });
}

/** questions.parquet of an `evalQuestions` artifact, as the evaluate stage reads it. */
export async function readEvalQuestions(input: ArtifactReader): Promise<Array<{ query_id: string; text: string; relevant: string[] }>> {
  const where = input.file(QUESTIONS_FILE);
  const t = await readParquet(where, ['query_id', 'text', 'relevant_chunk_ids']);
  const ids = stringColumn(t, 'query_id', where);
  const texts = stringColumn(t, 'text', where);
  const rel = stringListColumn(t, 'relevant_chunk_ids', where);
  return ids.map((query_id, i) => ({ query_id, text: texts[i]!, relevant: rel[i]! }));
}

export async function writeEvalQuestions(path: string, qs: EvalQuestion[]): Promise<void> {
  await writeParquet(path, questionsTable(qs));
}
