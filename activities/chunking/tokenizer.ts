import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadTransformers } from '../heavyLibs.ts';
import { sha256 } from '../../artifacts/hash.ts';
import { ModelNotFoundError } from '../../core/errors.ts';

/**
 * Counts tokens with an embedding model's own tokenizer (tokenizer.json, loaded by
 * @huggingface/transformers from a local directory; never from a hub).
 */
export interface TokenCounter {
  /** Special tokens the model adds around every input ([CLS] and [SEP] for BERT). */
  readonly special: number;
  /** sha256 of tokenizer.json: the tokenizer's identity. */
  readonly fingerprint: string;
  /** Content tokens of `text` (special tokens not included), exactly as the tokenizer counts them. */
  count(text: string): number;
  /**
   * `text[start, end)` cut into pieces: whitespace runs, single punctuation characters, and the words
   * between. `tokens[i]` counts piece i alone. When `additive` is true the tokenizer cannot see across
   * these cuts, so a span of whole pieces has exactly the sum of their tokens; otherwise the sum is an
   * estimate and spans must be counted with `count`.
   */
  pieces(text: string, start: number, end: number): Pieces;
}

export interface Pieces {
  ends: number[];
  tokens: number[];
  additive: boolean;
}

interface TokenizerJson {
  normalizer?: { type?: string; handle_chinese_chars?: boolean } | null;
  pre_tokenizer?: { type?: string } | null;
  added_tokens?: Array<{ content: string }>;
}

// Character classes, precomputed for the BMP: 1 whitespace, 2 punctuation, 3 CJK ideograph.
const WS = 1;
const PUNCT = 2;
const IDEO = 3;
const CLASS = (() => {
  const c = new Uint8Array(0x10000);
  const punct = /\p{P}/u;
  for (let i = 0; i < 0x10000; i++) {
    if (i >= 0xd800 && i <= 0xdfff) continue;
    if (punct.test(String.fromCharCode(i))) c[i] = PUNCT;
  }
  for (const w of [0x09, 0x0a, 0x0d, 0x20, 0x3000]) c[w] = WS;
  for (let i = 0x3400; i <= 0x4dbf; i++) c[i] = IDEO;
  for (let i = 0x4e00; i <= 0x9fff; i++) c[i] = IDEO;
  return c;
})();

/** Whitespace as the pieces see it: a piece starting with one is a whitespace run. */
export function isWhitespaceCode(c: number): boolean {
  return CLASS[c] === WS;
}

/** Word memo size before it is cleared (a long document must not grow it without bound). */
const MEMO_LIMIT = 500_000;
const MEMO_KEY_MAX = 64;

/**
 * Load the tokenizer of a model directory. For BERT-style tokenizers (BertNormalizer +
 * BertPreTokenizer: whitespace and every punctuation character split words, CJK ideographs are words
 * of their own) tokenisation cannot cross those cuts, so counting a span is summing its pieces, each
 * counted once by the real tokenizer and memoised: exact, and several times faster on Japanese text.
 * This is checked against whole-text encoding on a probe at load; any other tokenizer is counted whole.
 */
export async function loadTokenCounter(modelDir: string): Promise<TokenCounter> {
  // A sentence-transformers folder has tokenizer.json at its root; a `model` artifact keeps it in st/.
  let raw: string | undefined;
  let dir = modelDir;
  for (const candidate of [modelDir, join(modelDir, 'st')]) {
    raw = await readFile(join(candidate, 'tokenizer.json'), 'utf8').catch(() => undefined);
    if (raw !== undefined) {
      dir = candidate;
      break;
    }
  }
  if (raw === undefined) {
    throw new ModelNotFoundError(`no tokenizer.json in ${modelDir} (nor in its st/ folder)`, {
      where: modelDir,
      hint: 'pass a model directory that has its tokenizer (a sentence-transformers or Hugging Face model folder)',
    });
  }
  const fingerprint = sha256(raw);
  // One counter per tokenizer per process: a long-lived worker keeps its word memo warm across runs.
  let counter = loaded.get(fingerprint);
  if (!counter) {
    counter = createCounter(dir, raw, fingerprint);
    loaded.set(fingerprint, counter);
    counter.catch(() => loaded.delete(fingerprint));
  }
  return counter;
}

const loaded = new Map<string, Promise<TokenCounter>>();

async function createCounter(dir: string, raw: string, fingerprint: string): Promise<TokenCounter> {
  const config = JSON.parse(raw) as TokenizerJson;
  const { AutoTokenizer, env } = await loadTransformers();
  // transformers.js joins localModelPath and the id: '/' lets an absolute directory be the id.
  env.localModelPath = '/';
  const tok = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  const encode = (text: string): number => tok.encode(text, { add_special_tokens: false }).length;
  const special = tok.encode('', { add_special_tokens: true }).length;
  const bertLike = config.normalizer?.type === 'BertNormalizer' && config.pre_tokenizer?.type === 'BertPreTokenizer';
  const splitIdeographs = bertLike && config.normalizer?.handle_chinese_chars !== false;
  const added = (config.added_tokens ?? []).map((t) => t.content).filter((t) => t.length > 0);

  const memo = new Map<string, number>();
  // Single characters (ideographs, punctuation) are most pieces of Japanese text: counted by char code.
  const charMemo = new Int32Array(0x10000).fill(-1);
  const countMany = manyCounter(tok, encode, bertLike, added);

  const pieces = (text: string, start: number, end: number, additive: boolean): Pieces => {
    const ends: number[] = [];
    const tokens: number[] = [];
    const missing: Array<[number, string]> = [];
    let i = start;
    while (i < end) {
      const cls = CLASS[text.charCodeAt(i)]!;
      let j = i + 1;
      if (cls === WS) {
        while (j < end && CLASS[text.charCodeAt(j)] === WS) j++;
        ends.push(j);
        tokens.push(0);
        i = j;
        continue;
      }
      if (cls === 0) {
        while (j < end && CLASS[text.charCodeAt(j)] === 0) j++;
      } else if (cls === IDEO && !splitIdeographs) {
        while (j < end && (CLASS[text.charCodeAt(j)] === 0 || CLASS[text.charCodeAt(j)] === IDEO)) j++;
      }
      ends.push(j);
      if (j === i + 1) {
        const c = text.charCodeAt(i);
        let n = charMemo[c]!;
        if (n < 0) charMemo[c] = n = encode(text[i]!);
        tokens.push(n);
      } else {
        const w = text.slice(i, j);
        const n = memo.get(w);
        if (n === undefined) missing.push([tokens.length, w]);
        tokens.push(n ?? 0);
      }
      i = j;
    }
    if (missing.length) {
      const words = [...new Set(missing.map((m) => m[1]))];
      const found = countMany(words);
      const counts = new Map(words.map((w, k) => [w, found[k]!]));
      if (memo.size + words.length > MEMO_LIMIT) memo.clear();
      for (const [w, n] of counts) if (w.length <= MEMO_KEY_MAX) memo.set(w, n);
      for (const [idx, w] of missing) tokens[idx] = counts.get(w)!;
    }
    return { ends, tokens, additive };
  };

  const containsAdded = (s: string): boolean => added.some((a) => s.includes(a));
  speedUpWordPiece(tok, encode);
  const fast = bertLike && probeAgrees(pieces, encode);
  return {
    special,
    fingerprint,
    count: encode,
    pieces(text, start, end) {
      return pieces(text, start, end, fast && !containsAdded(text.slice(start, end)));
    },
  };
}

/** Words per batched encode call. */
const BATCH_WORDS = 2048;

/**
 * Counts for many words at once. For BERT-style tokenizers the words are encoded in one call, joined
 * by a punctuation mark that is always a token of its own, and the ids are split back at it (the
 * tokenizer cannot see across whitespace and punctuation, so each word is tokenized as if alone);
 * this saves the per-call cost of the pipeline. Anything else: one call per word.
 */
function manyCounter(tok: { encode(t: string, o: { add_special_tokens: boolean }): number[] }, encode: (t: string) => number, bertLike: boolean, added: string[]): (words: string[]) => number[] {
  const sepIds = tok.encode('。', { add_special_tokens: false });
  const sepId = sepIds.length === 1 ? sepIds[0] : undefined;
  const one = (words: string[]): number[] => words.map(encode);
  if (!bertLike || sepId === undefined) return one;
  return (words) => {
    const out: number[] = [];
    for (let k = 0; k < words.length; k += BATCH_WORDS) {
      const batch = words.slice(k, k + BATCH_WORDS);
      const joined = batch.join(' 。 ');
      if (added.some((a) => joined.includes(a))) {
        out.push(...one(batch));
        continue;
      }
      const counts: number[] = [0];
      for (const id of tok.encode(joined, { add_special_tokens: false })) {
        if (id === sepId) counts.push(0);
        else counts[counts.length - 1]!++;
      }
      if (counts.length === batch.length) out.push(...counts);
      else out.push(...one(batch));
    }
    return out;
  };
}

interface WordPieceModel {
  encode(tokens: string[]): string[];
  tokens_to_ids: Map<string, number>;
  unk_token: string;
  max_input_chars_per_word: number;
  config: { continuing_subword_prefix?: string; type?: string };
}

/**
 * transformers.js's WordPiece tries every substring of a word from its full length down, joining
 * character arrays each time: quadratic, and most of the cost of counting Japanese text (kana runs
 * are long words to BERT). The same greedy longest-match-first search runs here in one pass per
 * position, walking the vocabulary's prefixes. Installed on this tokenizer instance only, and kept
 * only if it reproduces the original on the probe text.
 */
function speedUpWordPiece(tok: object, encode: (text: string) => number): void {
  const model = (tok as { _tokenizer?: { model?: Partial<WordPieceModel> } })._tokenizer?.model;
  if (
    !model ||
    model.constructor?.name !== 'WordPieceTokenizer' ||
    typeof model.encode !== 'function' ||
    !(model.tokens_to_ids instanceof Map) ||
    typeof model.unk_token !== 'string' ||
    typeof model.max_input_chars_per_word !== 'number'
  ) {
    return;
  }
  const m = model as WordPieceModel;
  const prefix = m.config.continuing_subword_prefix ?? '##';
  // Vocabulary entries that may start a word, those that continue one (prefix stripped), and every
  // prefix of each, so the walk stops as soon as no entry can match.
  const vocab = { first: new Set<string>(), next: new Set<string>() };
  const prefixes = { first: new Set<string>(), next: new Set<string>() };
  for (const t of m.tokens_to_ids.keys()) {
    const cont = t.startsWith(prefix) && t.length > prefix.length;
    const body = cont ? t.slice(prefix.length) : t;
    const kind = cont ? 'next' : 'first';
    vocab[kind].add(body);
    let acc = '';
    for (const ch of body) prefixes[kind].add((acc += ch));
  }
  const before = PROBE.split('\n').map(encode);
  const original = m.encode;
  const max = m.max_input_chars_per_word;
  m.encode = (tokens: string[]): string[] => {
    const out: string[] = [];
    for (const token of tokens) {
      const n = token.length;
      if (codePoints(token) > max) {
        out.push(m.unk_token);
        continue;
      }
      const mark = out.length;
      let start = 0;
      while (start < n) {
        const kind = start > 0 ? 'next' : 'first';
        let best = -1;
        let end = start;
        while (end < n) {
          end += isHighSurrogate(token.charCodeAt(end)) && isLowSurrogate(token.charCodeAt(end + 1)) ? 2 : 1;
          const piece = token.slice(start, end);
          if (!prefixes[kind].has(piece)) break;
          if (vocab[kind].has(piece)) best = end;
        }
        if (best < 0) break;
        out.push(start > 0 ? prefix + token.slice(start, best) : token.slice(0, best));
        start = best;
      }
      if (start < n) {
        out.length = mark;
        out.push(m.unk_token);
      }
    }
    return out;
  };
  if (PROBE.split('\n').some((line, i) => encode(line) !== before[i])) m.encode = original;
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** Length in code points, as `[...s].length` (a lone surrogate counts as one). */
function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i + 1 < s.length; i++) {
    if (isHighSurrogate(s.charCodeAt(i)) && isLowSurrogate(s.charCodeAt(i + 1))) {
      n--;
      i++;
    }
  }
  return n;
}

// Mixed scripts, accents, full-width forms, punctuation runs and brackets: where a wrong cut would show.
const PROBE = [
  '東京都は日本の首都である。人口は約1400万人で、「世界最大級」の都市圏を形成している！',
  'ひらがなとカタカナ、漢字が混ざった文章です？　全角スペースも入れます。',
  'Café naïve résumé: e-mail (test@example.com) costs $3.50 — really?! Yes... 100%.',
  'ＡＢＣ１２３ ｱｲｳｴｵ ㌔ ① 𠮷野家 Ｅ＝ｍｃ² “quoted” ‘single’ [bracket] {brace} <angle>',
  'supercalifragilisticexpialidocious antidisestablishmentarianism 〜〜 ーー・・・',
].join('\n');

function probeAgrees(pieces: (t: string, s: number, e: number, a: boolean) => Pieces, encode: (t: string) => number): boolean {
  for (const line of PROBE.split('\n')) {
    const p = pieces(line, 0, line.length, true);
    if (p.tokens.reduce((a, b) => a + b, 0) !== encode(line)) return false;
  }
  return true;
}
