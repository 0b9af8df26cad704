import { normalizeQuery } from './textNorm.ts';

/**
 * Reads an LLM's answer into queries. The prompts ask for a numbered list; models also answer with
 * bullets, labelled lines ("質問1: …", "Q: …"), a JSON array or object, or wrap any of these in a code
 * fence; text comes out NFKC-normalised like the corpus. Anything that yields no query is malformed (the caller sends the repair prompt once, then
 * counts and skips it). Never throws.
 */

export interface ParsedAnswer {
  queries: string[];
  malformed: boolean;
}

const NUMBERED = /^\s*(?:\(?\d{1,2}(?:[.．](?!\d)|[)）:：、])|[①-⑳])\s*(.+)$/;
const BULLET = /^\s*(?:[-*]\s+|[・•●]\s*)(.+)$/;
const LABELLED =
  /^\s*(?:質問|キーワード|検索キーワード|依頼|依頼文|クエリ|query|question|keyword|keywords|request|q)\s*\d{0,2}\s*[:：]\s*(.+)$/i;
// An echo of the prompt's own scaffolding is not a query.
const SCAFFOLD = /\{\{\w+\}\}|^(?:文章|passage)\s*[:：]|^(?:この文章|write \d+|answer with)/i;
const MAX_QUERY_CHARS = 400;

/**
 * `examples`: normalised queries of the prompt's few-shot answers; small models like to copy them,
 * and a copy is no query about this passage.
 */
export function parseAnswer(answer: string, count: number, examples: ReadonlySet<string> = new Set()): ParsedAnswer {
  // NFKC, as the ingest stage normalises the corpus: full-width digits and marks become plain ones.
  const text = stripFence(answer).normalize('NFKC').trim();
  const candidates = fromJson(text) ?? (/^[[{]/.test(text) ? [] : fromLines(text));
  const seen = new Set<string>();
  const queries: string[] = [];
  for (const c of candidates) {
    const q = clean(c);
    if (!q || q.length > MAX_QUERY_CHARS || SCAFFOLD.test(q) || seen.has(q) || examples.has(normalizeQuery(q))) continue;
    seen.add(q);
    queries.push(q);
    if (queries.length === count) break;
  }
  return { queries, malformed: queries.length === 0 };
}

function stripFence(s: string): string {
  const m = /```[\w-]*\n?([\s\S]*?)(?:```|$)/.exec(s);
  return m ? (m[1] ?? '') : s;
}

function fromJson(text: string): string[] | undefined {
  if (!/^[[{]/.test(text)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const inner = Object.values(value).find(Array.isArray);
    value = inner ?? [value];
  }
  if (!Array.isArray(value)) return undefined;
  return value.flatMap((item): string[] => {
    if (typeof item === 'string') return [item];
    if (item && typeof item === 'object') {
      const o = item as Record<string, unknown>;
      const v = o['query'] ?? o['text'] ?? o['question'] ?? o['keyword'] ?? o['request'];
      return typeof v === 'string' ? [v] : [];
    }
    return [];
  });
}

function fromLines(text: string): string[] {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const listed: string[] = [];
  for (const line of lines) {
    const m = NUMBERED.exec(line) ?? BULLET.exec(line) ?? LABELLED.exec(line);
    if (m?.[1]) listed.push(LABELLED.exec(m[1])?.[1] ?? m[1]);
  }
  if (listed.length > 0) return listed;
  // A lone line is an answer to "write 1": accept it; several unmarked lines are prose, not a list.
  return lines.length === 1 ? lines : [];
}

// Control tokens of chat templates that a small model writes out as text when it has learnt another
// template than the server applies (Gemma 3 270M behind llama-server ended a query with `<|im_end|>`).
const CONTROL_TOKEN = /<\|[a-z_]{2,30}\|>|<\/?(?:start_of_turn|end_of_turn|eos|bos|s)>|\[\/?INST\]/gi;

function clean(s: string): string {
  let q = s.replace(CONTROL_TOKEN, ' ').replace(/\s+/g, ' ').trim();
  // Markdown emphasis and surrounding quotes the model may add.
  q = q.replace(/^\*\*(.+)\*\*$/, '$1').trim();
  for (;;) {
    const m = /^(["'「『“])(.*)(["'」』”])$/.exec(q);
    if (!m || m[2] === undefined) break;
    q = m[2].trim();
  }
  return q;
}
