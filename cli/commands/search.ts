import { InvalidInputError } from '../../core/errors.ts';
import { type ModelHits, type SearchModel, searchChunks } from '../../activities/embedding/searchChunks.ts';
import { resolveTarget } from '../modelTargets.ts';

// `embedflow search`: ask a run's models one question against its chunks, side by side.

export interface SearchFlags {
  k: number;
  json?: boolean;
  lexical?: boolean;
}

export async function cmdSearch(target: string, question: string, flags: SearchFlags): Promise<number> {
  if (!question.trim()) throw new InvalidInputError('the question is empty', { hint: 'embedflow search <runId|model digest> "your question"' });
  const { target: t, store } = await resolveTarget(target);
  if (!t.chunks) {
    throw new InvalidInputError(`no chunks found for ${target}: neither the run nor the model's lineage has a chunk stage`, {
      hint: 'pass the id of a run that chunked a corpus, or a model it trained',
    });
  }
  const models: SearchModel[] = [];
  if (t.base) models.push({ label: 'base', digest: t.base });
  if (t.finetuned) models.push({ label: t.base ? 'fine-tuned' : 'model', digest: t.finetuned });
  const results = await searchChunks(store, { models, chunks: t.chunks, question, k: flags.k, lexical: flags.lexical });
  if (flags.json) process.stdout.write(`${JSON.stringify({ question, chunks: t.chunks, models: results })}\n`);
  else process.stdout.write(`${sideBySide(results, process.stdout.columns ?? 120).join('\n')}\n`);
  return 0;
}

/** One column per model, rank by rank: score, chunk id and the start of the chunk's text. */
export function sideBySide(results: ModelHits[], width: number): string[] {
  const col = Math.max(30, Math.floor((Math.min(width, 200) - 3 * (results.length - 1)) / results.length));
  const fit = (s: string) => (s.length > col ? `${s.slice(0, col - 1)}…` : s.padEnd(col));
  const joinCols = (cells: string[]) => cells.map(fit).join(' │ ').trimEnd();
  const lines = [joinCols(results.map((r) => `${r.label}: ${r.name} (${r.digest.slice(0, 12)})`)), joinCols(results.map(() => '─'.repeat(col)))];
  const depth = Math.max(0, ...results.map((r) => r.hits.length));
  const textLines = 3;
  for (let i = 0; i < depth; i++) {
    lines.push(joinCols(results.map((r) => (r.hits[i] ? `${i + 1}. ${r.hits[i]!.score.toFixed(3)}  ${r.hits[i]!.chunkId}` : ''))));
    const wrapped = results.map((r) => wrap((r.hits[i]?.text ?? '').replace(/\s+/g, ' ').trim(), col - 3, textLines));
    for (let l = 0; l < textLines; l++) {
      const cells = wrapped.map((w) => (w[l] ? `   ${w[l]}` : ''));
      if (cells.some(Boolean)) lines.push(joinCols(cells));
    }
  }
  return lines;
}

/** At most `lines` lines of `width` characters, broken at spaces where a line has one, the last ending in … when the text goes on. */
function wrap(text: string, width: number, lines: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (rest && out.length < lines) {
    let cut = rest.length <= width ? rest.length : rest.lastIndexOf(' ', width);
    // No space in the line (or Japanese, which has none): break at the width.
    if (cut <= width / 2) cut = Math.min(width, rest.length);
    out.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  if (rest && out.length) out[out.length - 1] = `${out[out.length - 1]!.slice(0, width - 1)}…`;
  return out;
}
