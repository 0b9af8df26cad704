import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DOCUMENTS_FILE, type DocumentRow } from '../../activities/artifactKinds/documentsArtifact.ts';
import { docId } from '../../activities/ingest/documents.ts';
import { type IngestSummary, ingestCorpus } from '../../activities/ingest/ingestCorpus.ts';
import { rawSpanToTextSpan } from '../../activities/ingest/offsets.ts';
import { sha256 } from '../../artifacts/hash.ts';
import { readParquet } from '../../artifacts/parquet.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'corpus-ja');
const PYTHON = join(import.meta.dirname, '..', '..', '.venv', 'bin', 'python');

let work: string;
let summary: IngestSummary;
let docs: Map<string, DocumentRow>;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ef-ingest-'));
  summary = await ingestCorpus(FIXTURES, join(work, DOCUMENTS_FILE), { normalize: 'NFKC' });
  const table = await readParquet(join(work, DOCUMENTS_FILE));
  docs = new Map(table.toArray().map((r) => [r.path as string, r.toJSON() as unknown as DocumentRow]));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function doc(path: string): DocumentRow {
  const d = docs.get(path);
  if (!d) throw new Error(`no document ${path}; have ${[...docs.keys()].join(', ')}`);
  return d;
}

/** The raw span of the first occurrence of `needle` in the raw text, mapped onto the text. */
function mapped(d: DocumentRow, needle: string): string {
  const start = d.raw_text.indexOf(needle);
  expect(start, `${needle} in raw_text of ${d.path}`).toBeGreaterThanOrEqual(0);
  const [s, e] = rawSpanToTextSpan(d.offset_map, start, start + needle.length);
  return d.text.slice(s, e);
}

describe('ingest: every format of the Japanese fixture corpus', () => {
  it('reads all five files, one document each, with ids and content hashes as the contract says', () => {
    expect(summary.documents).toBe(5);
    expect(summary.skipped).toEqual([]);
    expect(summary.encodings).toEqual({ 'utf-8': 2, shift_jis: 1, 'euc-jp': 1, pdf: 1 });
    for (const d of docs.values()) {
      expect(d.doc_id).toBe(docId(d.path));
      expect(d.doc_id).toMatch(/^[0-9a-f]{16}$/);
      expect(d.content_hash).toBe(sha256(d.text));
    }
    expect([...docs.values()].map((d) => d.format).sort()).toEqual(['html', 'md', 'pdf', 'txt', 'txt']);
  });

  it('extracts a multi-page Japanese PDF page by page (CID font, not embedded)', () => {
    const d = doc('report.pdf');
    expect(d.title).toBe('緑ヶ丘町立図書館 利用調査報告');
    const pages = JSON.parse(d.pages ?? 'null') as number[];
    expect(pages).toHaveLength(3);
    expect(pages[0]).toBe(0);
    expect(d.text.slice(pages[1]).startsWith('第2章 貸出の傾向\n')).toBe(true);
    expect(d.text.slice(pages[2]).startsWith('第3章 今後の課題\n')).toBe(true);
    expect(d.text.slice(0, pages[1])).toContain('学生の利用が目立った。');
    expect(d.text).toContain('二〇二四年度に行った利用調査の結果をまとめたものである。');
    // A vertical gap on the page becomes a paragraph break.
    expect(d.text).toContain('実施した。\n\n来館者数は');
  });

  it('keeps the main text of an HTML page and drops scripts, styles, navigation, header, footer and sidebar', () => {
    const d = doc('events.html');
    expect(d.title).toBe('行事のお知らせ | 緑ヶ丘町立図書館');
    expect(d.text.startsWith('# 行事のお知らせ\n\n')).toBe(true);
    expect(d.text).toContain('\n\n## 申し込み方法\n\n');
    for (const gone of ['スクリプト', 'analytics', 'font-family', 'ホーム', 'トップ', '人気の本', '©', '末尾']) {
      expect(d.text).not.toContain(gone);
    }
    // A source line break between two Japanese characters is no space; an entity is decoded.
    expect(d.text).toContain('土曜日に、大人向けの古文書講座を開きます。定員は');
    expect(d.text).toContain('三十一日です&当日の受付はありません。');
    expect(d.text).toContain('持ち物:筆記用具\n費用:無料');
  });

  it('reads Markdown as it is, titled by its first heading', () => {
    const d = doc('guide.md');
    expect(d.title).toBe('緑ヶ丘町立図書館 利用案内');
    expect(d.text).toBe(d.raw_text.normalize('NFKC'));
    expect(d.text).toContain('## 開館時間');
  });

  it('detects Shift_JIS (Windows-31J) and EUC-JP and normalises with NFKC', () => {
    const sjis = doc('notice-sjis.txt');
    expect(sjis.title).toBe('館内の注意');
    expect(sjis.raw_text).toContain('重さ１０㌔を超える荷物は');
    expect(sjis.raw_text).toContain('ｶﾞｲﾄﾞﾌﾞｯｸ');
    expect(sjis.text).toContain('重さ10キロを超える荷物は');
    expect(sjis.text).toContain('ガイドブックもご利用ください。');
    const euc = doc('letter-eucjp.txt');
    expect(euc.text).toContain('秋の読書週間に合わせて、絵本の読み聞かせ会を開きます。');
  });

  it('maps spans of the raw file text onto the normalised text (rawSpanToTextSpan)', () => {
    const sjis = doc('notice-sjis.txt');
    expect(mapped(sjis, '１０㌔')).toBe('10キロ');
    expect(mapped(sjis, '㌔')).toBe('キロ');
    expect(mapped(sjis, 'ｶﾞｲﾄﾞﾌﾞｯｸ')).toBe('ガイドブック');
    expect(mapped(sjis, '受付でお預かりします')).toBe('受付でお預かりします');
    // Half of an atomic replacement widens to all of it (ｶﾞ became one character).
    const kana = sjis.raw_text.indexOf('ｶﾞ');
    expect(sjis.text.slice(...rawSpanToTextSpan(sjis.offset_map, kana, kana + 1))).toBe('ガ');
    const html = doc('events.html');
    expect(mapped(html, '先着順に受け付けます')).toBe('先着順に受け付けます');
    expect(mapped(html, '三十一日です&amp;当日')).toBe('三十一日です&当日');
    expect(mapped(html, '土曜日に、\n大人向け')).toBe('土曜日に、大人向け');
    const pdf = doc('report.pdf');
    expect(mapped(pdf, '予算の確保')).toBe('予算の確保');
    // Every line of the Markdown file maps onto itself.
    const md = doc('guide.md');
    let pos = 0;
    for (const line of md.raw_text.split('\n')) {
      expect(md.text.slice(...rawSpanToTextSpan(md.offset_map, pos, pos + line.length))).toBe(line.normalize('NFKC'));
      pos += line.length + 1;
    }
    expect(() => rawSpanToTextSpan(md.offset_map, 5, md.raw_text.length + 1)).toThrow(/not inside the raw text/);
  });

  it('can leave the text unnormalised', async () => {
    const out = join(work, 'plain.parquet');
    await ingestCorpus(FIXTURES, out, { normalize: 'none' });
    const rows = (await readParquet(out)).toArray().map((r) => r.toJSON() as unknown as DocumentRow);
    const sjis = rows.find((r) => r.path === 'notice-sjis.txt')!;
    expect(sjis.text).toBe(sjis.raw_text);
    expect(sjis.text).toContain('１０㌔');
  });

  it('writes a documents.parquet that pyarrow reads with the contract schema', () => {
    const script = `
import json, sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
print(json.dumps({"schema": {f.name: str(f.type) for f in t.schema}, "rows": t.num_rows,
                  "pdf_pages": [r for r in t.column("pages").to_pylist() if r is not None]}))`;
    const out = JSON.parse(execFileSync(PYTHON, ['-c', script, join(work, DOCUMENTS_FILE)], { encoding: 'utf8' })) as {
      schema: Record<string, string>;
      rows: number;
      pdf_pages: string[];
    };
    expect(out.rows).toBe(5);
    expect(out.schema).toEqual({
      doc_id: 'string',
      path: 'string',
      format: 'string',
      title: 'string',
      content_hash: 'string',
      text: 'string',
      raw_text: 'string',
      offset_map: 'string',
      pages: 'string',
    });
    expect(out.pdf_pages).toHaveLength(1);
  });
});
