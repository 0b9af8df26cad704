import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import type { ArtifactReader } from '../artifacts/store.ts';
import { defineStage } from '../dsl/stage.ts';
import { readChunkSpans } from './artifactKinds/chunksArtifact.ts';
import { type DocumentSource, readDocumentSources } from './artifactKinds/documentsArtifact.ts';
import { type EvalQuestion, QUESTIONS_FILE, writeEvalQuestions } from './artifactKinds/evalQuestionsArtifact.ts';
import { EvalQuestionsError } from '../core/errors.ts';
import { ChunkSpanIndex } from './evaluation/relevance.ts';
import { rawSpanToTextSpan } from './ingest/offsets.ts';

/**
 * Human-written evaluation questions (--eval-questions FILE, JSON Lines), one per line:
 *   {"id": "q1", "question": "…", "doc": "guide/setup.md", "start": 120, "end": 134, "answer": "…"}
 * `doc` is the document's path relative to the corpus root (a unique path suffix, e.g. the bare file
 * name, is accepted too); [start, end) is the gold answer span in UTF-16 code units of the file's
 * decoded text; `answer`, when given, must equal that slice. The span is mapped onto the normalised
 * text and every chunk covering it becomes relevant (activities/evaluation/relevance.ts).
 */

export const QuestionLine = z.object({
  id: z.union([z.string().min(1), z.number().int()]).transform(String),
  question: z.string().trim().min(1, 'the question is empty'),
  doc: z.string().min(1),
  start: z.number().int().nonnegative(),
  end: z.number().int().nonnegative(),
  answer: z.string().optional(),
}).refine((q) => q.end > q.start, { message: 'end must be greater than start', path: ['end'] });

const MAX_REPORTED_PROBLEMS = 20;

export const importQuestions = defineStage({
  kind: 'importQuestions',
  description: 'Validate human-written questions (JSONL, gold answer spans) and resolve the chunks relevant to each.',
  params: z.object({}).strict(),
  inputs: { questions: 'files', documents: 'documents', chunks: 'chunks' },
  output: 'evalQuestions',
  defaults: { queue: 'cpu', startToCloseTimeout: '30m', retry: { maximumAttempts: 2 } },
  async run(ctx) {
    const { path: qPath, display } = questionsFile(ctx.inputs.questions);
    const docs = await readDocumentSources(ctx.inputs.documents);
    const index = new ChunkSpanIndex(await readChunkSpans(ctx.inputs.chunks));

    const { questions, dropped } = resolveQuestions(await readFile(qPath, 'utf8'), display, docs, index);
    await writeEvalQuestions(await ctx.out.file(QUESTIONS_FILE), questions);
    const partial = questions.filter((q) => q.coverage === 'partial').length;
    const relevantTotal = questions.reduce((s, q) => s + q.relevant_chunk_ids.length, 0);
    return {
      rows: { [QUESTIONS_FILE]: questions.length },
      stats: {
        questions: questions.length,
        documents: new Set(questions.map((q) => q.doc_id)).size,
        spansSplitAcrossChunks: partial,
        dropped: dropped.length,
        relevantChunksPerQuestion: questions.length ? Number((relevantTotal / questions.length).toFixed(3)) : 0,
      },
      meta: { source: display, dropped: dropped.slice(0, 100) },
    };
  },
});

function questionsFile(input: ArtifactReader): { path: string; display: string } {
  const files = input.manifest.files.map((f) => f.path);
  const candidates = files.length === 1 ? files : files.filter((f) => f.endsWith('.jsonl'));
  if (candidates.length !== 1) {
    throw new EvalQuestionsError(`expected one questions file, the input holds ${files.length === 0 ? 'none' : files.join(', ')}`, {
      hint: 'pass --eval-questions FILE with a single JSON Lines file',
    });
  }
  const source = input.manifest.meta['source'];
  const rel = candidates[0]!;
  return { path: input.file(rel), display: typeof source === 'string' && files.length === 1 ? source : rel };
}

/** Find a question's document: its exact path, else the one document whose path ends with `/doc`. */
function documentFinder(docs: DocumentSource[]): (doc: string) => DocumentSource | DocumentSource[] | undefined {
  const byPath = new Map(docs.map((d) => [d.path, d]));
  return (doc) => {
    const norm = doc.replace(/\\/g, '/').replace(/^\.\//, '');
    const exact = byPath.get(norm);
    if (exact) return exact;
    const suffix = docs.filter((d) => d.path.endsWith(`/${norm}`));
    return suffix.length === 1 ? suffix[0] : suffix.length > 1 ? suffix : undefined;
  };
}

function preview(s: string, max = 40): string {
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
}

/**
 * Parse and check every line; all problems are collected so one run shows them together. Questions
 * whose span lies in text the ingest stage removed (e.g. a <script>) cannot be answered by any chunk:
 * they are dropped and listed, not failed.
 */
export function resolveQuestions(
  content: string,
  file: string,
  docs: DocumentSource[],
  index: ChunkSpanIndex,
): { questions: EvalQuestion[]; dropped: Array<{ id: string; line: number; reason: string }> } {
  const find = documentFinder(docs);
  const problems: Array<{ line: number; message: string; hint: string }> = [];
  const questions: EvalQuestion[] = [];
  const dropped: Array<{ id: string; line: number; reason: string }> = [];
  const seen = new Map<string, number>();
  const lines = content.split(/\r?\n/);
  for (let i = 0; i < lines.length && problems.length < MAX_REPORTED_PROBLEMS; i++) {
    const raw = lines[i]!.replace(/^\uFEFF/, '').trim();
    const line = i + 1;
    if (raw === '') continue;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (err) {
      problems.push({ line, message: `not valid JSON (${(err as Error).message})`, hint: 'write one JSON object per line' });
      continue;
    }
    const parsed = QuestionLine.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      problems.push({
        line,
        message: `${issue.path.join('.') || 'line'}: ${issue.message}`,
        hint: 'each line needs {"id", "question", "doc", "start", "end"} (integers, end > start), "answer" optional',
      });
      continue;
    }
    const q = parsed.data;
    const firstLine = seen.get(q.id);
    if (firstLine !== undefined) {
      problems.push({ line, message: `duplicate id ${JSON.stringify(q.id)} (first on line ${firstLine})`, hint: 'give every question its own id' });
      continue;
    }
    seen.set(q.id, line);
    const doc = find(q.doc);
    if (!doc || Array.isArray(doc)) {
      problems.push({
        line,
        message: doc
          ? `doc ${JSON.stringify(q.doc)} matches several documents: ${doc.slice(0, 3).map((d) => d.path).join(', ')}`
          : `doc ${JSON.stringify(q.doc)} is not a document of the corpus`,
        hint: `give the document's path relative to the corpus root, e.g. ${JSON.stringify(docs[0]?.path ?? 'notes/a.md')}`,
      });
      continue;
    }
    if (q.end > doc.raw_text.length) {
      problems.push({
        line,
        message: `span [${q.start}, ${q.end}) lies outside ${doc.path} (${doc.raw_text.length} characters)`,
        hint: 'start/end are UTF-16 code-unit offsets (JavaScript string indices) into the file as decoded',
      });
      continue;
    }
    const gold = doc.raw_text.slice(q.start, q.end);
    if (q.answer !== undefined && gold !== q.answer) {
      problems.push({
        line,
        message: `span [${q.start}, ${q.end}) of ${doc.path} reads ${preview(gold)}, but answer is ${preview(q.answer)}`,
        hint: 'offsets count UTF-16 code units of the decoded file (not bytes, not code points); fix the offsets or the answer',
      });
      continue;
    }
    const [textStart, textEnd] = rawSpanToTextSpan(doc.offset_map, q.start, q.end);
    const rel = textEnd > textStart ? index.relevantFor(doc.doc_id, textStart, textEnd) : { chunkIds: [], coverage: 'none' as const };
    if (rel.coverage === 'none') {
      dropped.push({ id: q.id, line, reason: `span [${q.start}, ${q.end}) is not in any chunk of ${doc.path} (text removed by ingest)` });
      continue;
    }
    questions.push({
      query_id: q.id,
      text: q.question,
      path: doc.path,
      start: q.start,
      end: q.end,
      relevant_chunk_ids: rel.chunkIds,
      doc_id: doc.doc_id,
      text_start: textStart,
      text_end: textEnd,
      answer: q.answer ?? null,
      coverage: rel.coverage,
    });
  }
  if (problems.length > 0) {
    const first = problems[0]!;
    const list = problems.map((p) => `${file}:${p.line}: ${p.message}`).join('\n');
    throw new EvalQuestionsError(
      `${problems.length >= MAX_REPORTED_PROBLEMS ? `${MAX_REPORTED_PROBLEMS}+` : problems.length} bad line(s) in the evaluation questions:\n${list}`,
      { where: `${file}:${first.line}`, hint: first.hint },
    );
  }
  if (questions.length === 0) {
    throw new EvalQuestionsError(`no usable question in ${file}`, {
      where: file,
      hint: dropped.length ? `all ${dropped.length} spans fall in text the ingest stage removed` : 'the file is empty',
    });
  }
  return { questions, dropped };
}
