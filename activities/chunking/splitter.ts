import { sha256 } from '../../artifacts/hash.ts';
import { StageParamsError } from '../../core/errors.ts';
import { splitSections } from './sections.ts';
import { isWhitespaceCode, type Pieces, type TokenCounter } from './tokenizer.ts';

export interface SplitOptions {
  /** Upper bound on a chunk's tokens as the model sees them (its special tokens included). */
  maxTokens: number;
  /** Content tokens the start of a chunk may repeat from the end of the previous one. */
  overlap: number;
}

export interface SplitDocument {
  doc_id: string;
  path: string;
  format: string;
  content_hash: string;
  text: string;
  /** JSON array of page start offsets (PDF), or null. */
  pages: string | null;
}

export interface ChunkRow {
  chunk_id: string;
  doc_id: string;
  path: string;
  ordinal: number;
  text: string;
  start: number;
  end: number;
  heading: string;
  page: number | null;
  /** Tokens as the model sees the chunk: its special tokens ([CLS], [SEP]) included. */
  tokens: number;
}

// Break strength at a position, weakest first. A heading is stronger still: sections never merge.
const WORD = 0;
const CLAUSE = 1;
const LINE = 2;
const SENTENCE = 3;
const PARAGRAPH = 4;

/** A paragraph break is taken over a later sentence end only when it keeps the chunk at least this full. */
const MIN_PARAGRAPH_FILL = 0.5;

const SENTENCE_END = new Set(['。', '！', '？', '!', '?', '｡', '．', '.']);
const CLOSERS = new Set(['」', '』', '）', ')', '】', '〕', '〉', '》', '"', "'", '”', '’', ']', '］', '｣']);
const CLAUSE_END = new Set(['、', '，', ',', ';', '；', ':', '：', '､']);

/**
 * Split one document into chunks of at most `maxTokens` tokens of the model's tokenizer. Chunks stay
 * inside their heading's section and end at the strongest break within reach: a paragraph (when it
 * keeps the chunk at least half full), else a sentence end (。！？ and ASCII forms), else a line
 * break, a clause mark (、,;:), a word boundary; a single word longer than the bound is cut hard.
 * A chunk is a pure function of the document's text and these options (never of other documents),
 * so an unchanged document always yields the same chunks with the same ids.
 */
export function splitDocument(doc: SplitDocument, counter: TokenCounter, opts: SplitOptions): ChunkRow[] {
  return [...iterateChunks(doc, counter, opts)];
}

/**
 * The chunks of a document one by one, so a huge document never has all its chunks in memory at once:
 * sections longer than BLOCK_CHARS are worked through in blocks cut at a paragraph or line break.
 */
export function* iterateChunks(doc: SplitDocument, counter: TokenCounter, opts: SplitOptions): Generator<ChunkRow> {
  const budget = checkSplitOptions(counter, opts);
  const text = doc.text;
  const pageStarts = doc.pages ? (JSON.parse(doc.pages) as number[]) : undefined;
  let ordinal = 0;
  for (const section of splitSections(text, doc.format === 'md' || doc.format === 'html')) {
    const heading = section.headings.join(' > ');
    for (const [blockStart, blockEnd] of blocks(text, section.start, section.end)) {
      for (const seg of boundedSegments(text, blockStart, blockEnd, counter, budget)) {
        for (const s of packSegment(text, seg, counter, budget, opts.overlap)) {
          const chunkText = text.slice(s.start, s.end);
          yield {
            chunk_id: chunkId(doc.content_hash, s.start, s.end, chunkText),
            doc_id: doc.doc_id,
            path: doc.path,
            ordinal: ordinal++,
            text: chunkText,
            start: s.start,
            end: s.end,
            heading,
            page: pageStarts ? pageOf(pageStarts, s.start) : null,
            tokens: s.tokens + counter.special,
          };
        }
      }
    }
  }
}

/** Sections are processed in blocks of about this many characters (bounds the per-block arrays). */
const BLOCK_CHARS = 1 << 20;

/**
 * Cut [start, end) into blocks of at most about BLOCK_CHARS, each ending after a paragraph break
 * when there is one in the block's second half, else after a line break, else after whitespace, else
 * anywhere outside a surrogate pair. Ordinary documents are one block.
 */
function blocks(text: string, start: number, end: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let s = start;
  while (end - s > BLOCK_CHARS) {
    const limit = s + BLOCK_CHARS;
    const half = s + BLOCK_CHARS / 2;
    const para = text.lastIndexOf('\n\n', limit);
    const line = text.lastIndexOf('\n', limit);
    let cut = para >= half ? para + 2 : line >= half ? line + 1 : -1;
    if (cut < 0) {
      cut = limit;
      while (cut > half && !isWhitespaceCode(text.charCodeAt(cut - 1))) cut--;
      if (cut <= half) cut = isHighSurrogate(text.charCodeAt(limit - 1)) ? limit - 1 : limit;
    }
    out.push([s, cut]);
    s = cut;
  }
  out.push([s, end]);
  return out;
}

/** The content-token budget of a chunk; options the model's special tokens leave no room for are refused. */
export function checkSplitOptions(counter: TokenCounter, opts: SplitOptions): number {
  const budget = opts.maxTokens - counter.special;
  if (budget < 1) {
    throw new StageParamsError(`params.maxTokens: ${opts.maxTokens} leaves no room beside the model's ${counter.special} special tokens`, {
      hint: `set maxTokens above ${counter.special} (e.g. 256)`,
    });
  }
  if (opts.overlap >= budget) {
    throw new StageParamsError(`params.overlap: ${opts.overlap} must be below maxTokens minus the model's ${counter.special} special tokens (${budget})`, {
      hint: `set overlap below ${budget}`,
    });
  }
  return budget;
}

export function chunkId(contentHash: string, start: number, end: number, text: string): string {
  return sha256(`${contentHash}\n${start}\n${end}\n${text}`).slice(0, 16);
}

function pageOf(starts: number[], pos: number): number {
  let page = 1;
  for (let i = 0; i < starts.length; i++) if (starts[i]! <= pos) page = i + 1;
  return page;
}

/** A stretch of text whose pieces are each within the budget, with break strengths at piece ends. */
interface Segment {
  start: number;
  pieces: Pieces;
}

/**
 * Pieces of a section; a piece over the budget (one enormous word) is cut hard into parts that fit,
 * and the segment is ended around it so no chunk ever joins two parts of a cut word.
 */
function boundedSegments(text: string, start: number, end: number, counter: TokenCounter, budget: number): Segment[] {
  const all = counter.pieces(text, start, end);
  const segments: Segment[] = [];
  let cur: Pieces = { ends: [], tokens: [], additive: all.additive };
  let curStart = start;
  let pieceStart = start;
  for (let i = 0; i < all.ends.length; i++) {
    const pieceEnd = all.ends[i]!;
    if (all.tokens[i]! <= budget) {
      cur.ends.push(pieceEnd);
      cur.tokens.push(all.tokens[i]!);
    } else {
      if (cur.ends.length) segments.push({ start: curStart, pieces: cur });
      for (const [s, e, n] of hardCut(text, pieceStart, pieceEnd, counter, budget)) {
        segments.push({ start: s, pieces: { ends: [e], tokens: [n], additive: true } });
      }
      cur = { ends: [], tokens: [], additive: all.additive };
      curStart = pieceEnd;
    }
    pieceStart = pieceEnd;
  }
  if (cur.ends.length) segments.push({ start: curStart, pieces: cur });
  return segments;
}

/** Cut text[start, end) into consecutive parts of at most `budget` tokens each (never inside a surrogate pair). */
function hardCut(text: string, start: number, end: number, counter: TokenCounter, budget: number): Array<[number, number, number]> {
  const parts: Array<[number, number, number]> = [];
  let s = start;
  while (s < end) {
    let lo = s + 1;
    let hi = end;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (counter.count(text.slice(s, mid)) <= budget) lo = mid;
      else hi = mid - 1;
    }
    let e = lo;
    if (e < end && isHighSurrogate(text.charCodeAt(e - 1)) && e - 1 > s) e--;
    else if (e < end && isHighSurrogate(text.charCodeAt(e - 1))) e++;
    parts.push([s, e, counter.count(text.slice(s, e))]);
    s = e;
  }
  return parts;
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

/**
 * Greedy packing of one segment: from a start, reach as far as the budget allows, step back to the
 * strongest break within reach, emit, then start the next chunk up to `overlap` tokens earlier.
 */
function packSegment(
  text: string,
  seg: Segment,
  counter: TokenCounter,
  budget: number,
  overlap: number,
): Array<{ start: number; end: number; tokens: number }> {
  const { ends, tokens, additive } = seg.pieces;
  const n = ends.length;
  // pos[k]: offset of boundary k (pos[0] = segment start); cum[k]: tokens of pieces before it.
  const pos = new Int32Array(n + 1);
  const cum = new Float64Array(n + 1);
  pos[0] = seg.start;
  for (let i = 0; i < n; i++) {
    pos[i + 1] = ends[i]!;
    cum[i + 1] = cum[i]! + tokens[i]!;
  }
  const space = new Uint8Array(n);
  for (let i = 0; i < n; i++) space[i] = isWhitespaceCode(text.charCodeAt(pos[i]!)) ? 1 : 0;
  const level = breakLevels(text, pos, space);
  const isSpace = (k: number): boolean => space[k] === 1;
  // Boundaries that begin or end a chunk skip whitespace pieces.
  const skipSpaceForward = (k: number): number => {
    while (k < n && isSpace(k)) k++;
    return k;
  };
  const trimBack = (k: number): number => {
    while (k > 0 && isSpace(k - 1)) k--;
    return k;
  };
  const exact = (a: number, b: number): number => (additive ? cum[b]! - cum[a]! : counter.count(text.slice(pos[a]!, pos[b]!)));

  const out: Array<{ start: number; end: number; tokens: number }> = [];
  let a = skipSpaceForward(0);
  let prevEnd = -1;
  while (a < n) {
    let b = chooseEnd(a, cum, level, n, budget);
    // Non-additive tokenizers: the estimate may be over; step back until the real count fits.
    while (!additive && b > a + 1 && exact(a, trimBack(b)) > budget) b = chooseEnd(a, cum, level, b - 1, budget);
    const end = Math.max(trimBack(b), a + 1);
    if (end <= prevEnd) {
      // The overlap left no room to move forward: restart right after the previous chunk.
      a = skipSpaceForward(prevEnd);
      continue;
    }
    out.push({ start: pos[a]!, end: pos[end]!, tokens: exact(a, end) });
    prevEnd = end;
    if (skipSpaceForward(end) >= n) break;
    a = skipSpaceForward(overlap > 0 ? overlapStart(a, end, cum, level, overlap) : end);
  }
  return out;
}

/**
 * The boundary to end a chunk starting at boundary `a`: the furthest one within the budget if the
 * rest of the segment fits; otherwise the furthest of the strongest break kind within reach.
 */
function chooseEnd(a: number, cum: Float64Array, level: Uint8Array, limit: number, budget: number): number {
  // Furthest boundary within the budget (cum is non-decreasing).
  let lo = a + 1;
  let hi = limit;
  if (cum[lo]! - cum[a]! > budget) return lo;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (cum[mid]! - cum[a]! <= budget) lo = mid;
    else hi = mid - 1;
  }
  const reach = lo;
  if (reach === limit && limit === level.length - 1) return reach;
  let best = [-1, -1, -1, -1, -1];
  for (let k = reach; k > a; k--) {
    const l = level[k]!;
    for (let x = 0; x <= l; x++) if (best[x] === -1) best[x] = k;
    if (best[PARAGRAPH] !== -1) break;
  }
  const para = best[PARAGRAPH]!;
  if (para !== -1 && cum[para]! - cum[a]! >= MIN_PARAGRAPH_FILL * budget) return para;
  for (const l of [SENTENCE, LINE, CLAUSE, WORD]) if (best[l]! !== -1) return best[l]!;
  return reach;
}

/**
 * Where the next chunk starts so that it repeats at most `overlap` tokens before `end`: the earliest
 * boundary within that window, at the strongest break kind found there; `end` if there is none.
 */
function overlapStart(a: number, end: number, cum: Float64Array, level: Uint8Array, overlap: number): number {
  let bestLevel = -1;
  let best = end;
  for (let k = end - 1; k > a && cum[end]! - cum[k]! <= overlap; k--) {
    const l = Math.min(level[k]!, SENTENCE);
    if (l >= bestLevel) {
      bestLevel = l;
      best = k;
    }
  }
  return best;
}

/**
 * Break strength at each piece boundary k (between piece k-1 and piece k). Whitespace lends its
 * strength to the boundary before it, so a chunk ending there needs no trailing whitespace.
 */
function breakLevels(text: string, pos: Int32Array, space: Uint8Array): Uint8Array {
  const n = space.length;
  const level = new Uint8Array(n + 1);
  for (let i = 0; i < n; i++) {
    const s = pos[i]!;
    const e = pos[i + 1]!;
    const ch = text[s]!;
    if (space[i]) {
      const breaks = countLineBreaks(text, s, e);
      const l = breaks >= 2 ? PARAGRAPH : breaks === 1 ? LINE : WORD;
      level[i] = Math.max(level[i]!, l);
      level[i + 1] = Math.max(level[i + 1]!, l);
    } else if (e - s === 1 && SENTENCE_END.has(ch) && endsSentence(text, s)) {
      // The sentence ends after any closing brackets that follow its mark.
      let k = i + 1;
      while (k < n && pos[k + 1]! - pos[k]! === 1 && CLOSERS.has(text[pos[k]!]!)) k++;
      level[k] = Math.max(level[k]!, SENTENCE);
    } else if (e - s === 1 && CLAUSE_END.has(ch)) {
      level[i + 1] = Math.max(level[i + 1]!, CLAUSE);
    }
  }
  return level;
}

function countLineBreaks(text: string, s: number, e: number): number {
  let n = 0;
  for (let i = s; i < e; i++) {
    const c = text.charCodeAt(i);
    if (c === 10 || (c === 13 && text.charCodeAt(i + 1) !== 10)) n++;
  }
  return n;
}

/** An ASCII '.' ends a sentence before whitespace, the end, or Japanese text (not in 3.14 or e.g.x). */
function endsSentence(text: string, i: number): boolean {
  const ch = text[i];
  if (ch !== '.') return true;
  const next = text.charCodeAt(i + 1);
  if (Number.isNaN(next) || next === 32 || next === 10 || next === 13 || next === 9) return true;
  const prev = text.charCodeAt(i - 1);
  return next >= 0x3000 && !(prev >= 48 && prev <= 57);
}
