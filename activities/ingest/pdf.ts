import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';

export type PdfText =
  | { ok: true; text: string; title: string; pageStarts: number[] }
  | { ok: false; reason: string };

interface TextItem {
  str: string;
  hasEOL: boolean;
  transform: number[];
  height: number;
}

type PdfJs = typeof import('pdfjs-dist/legacy/build/pdf.mjs');
let pdfjs: Promise<PdfJs> | undefined;

// The legacy build is the one pdfjs supports on Node; CMaps let it read Japanese CID fonts that the
// file does not embed (Adobe-Japan1 with UniJIS encodings, common in Japanese PDFs).
const pdfjsDir = dirname(createRequire(import.meta.url).resolve('pdfjs-dist/package.json'));
// (On Node pdfjs reads these with fs: plain paths with a trailing separator.)
const CMAPS = join(pdfjsDir, 'cmaps') + sep;
const FONTS = join(pdfjsDir, 'standard_fonts') + sep;

/**
 * The text layer of a PDF, page by page (pdfjs-dist). Lines end with '\n'; a vertical gap well above
 * the page's usual line spacing starts a paragraph ('\n\n'); pages are joined with '\n' (a sentence
 * may run on over a page break). `pageStarts[i]` is where page i+1 begins in the text.
 * A PDF with no text at all (a scan) or one pdfjs cannot open is reported, not guessed at.
 */
export async function extractPdf(bytes: Uint8Array): Promise<PdfText> {
  pdfjs ??= import('pdfjs-dist/legacy/build/pdf.mjs');
  const lib = await pdfjs;
  const task = lib.getDocument({
    data: bytes,
    cMapUrl: CMAPS,
    cMapPacked: true,
    standardFontDataUrl: FONTS,
    isEvalSupported: false,
    disableFontFace: true,
    useSystemFonts: false,
    verbosity: 0,
  });
  let doc;
  try {
    doc = await task.promise;
  } catch (err) {
    await task.destroy();
    const name = (err as Error).name;
    if (name === 'PasswordException') return { ok: false, reason: 'password-protected PDF' };
    return { ok: false, reason: `unreadable PDF (${name}: ${(err as Error).message})` };
  }
  try {
    const pages: string[] = [];
    for (let p = 1; p <= doc.numPages; p++) {
      const page = await doc.getPage(p);
      const content = await page.getTextContent();
      pages.push(pageText(content.items.filter((i): i is TextItem & typeof i => 'str' in i)));
      page.cleanup();
    }
    if (pages.every((t) => t.trim() === '')) {
      return { ok: false, reason: `no text layer in ${doc.numPages} page(s) (a scanned PDF? run OCR first)` };
    }
    const pageStarts: number[] = [];
    let text = '';
    for (const t of pages) {
      if (text && !text.endsWith('\n')) text += '\n';
      pageStarts.push(text.length);
      text += t;
    }
    const info = (await doc.getMetadata().catch(() => undefined))?.info as { Title?: unknown } | undefined;
    const title = typeof info?.Title === 'string' ? info.Title.trim() : '';
    return { ok: true, text, title, pageStarts };
  } catch (err) {
    return { ok: false, reason: `damaged PDF (${(err as Error).message})` };
  } finally {
    await doc.destroy();
  }
}

function pageText(items: TextItem[]): string {
  const lines: Array<{ text: string; y: number; h: number }> = [];
  let cur = '';
  let y: number | undefined;
  let h = 0;
  for (const it of items) {
    if (y === undefined && it.str !== '') {
      y = it.transform[5] ?? 0;
      h = it.height;
    }
    cur += it.str;
    if (it.hasEOL) {
      lines.push({ text: cur, y: y ?? 0, h });
      cur = '';
      y = undefined;
    }
  }
  if (cur !== '' || y !== undefined) lines.push({ text: cur, y: y ?? 0, h });
  const kept = lines.filter((l) => l.text.trim() !== '');
  const gaps = kept.slice(1).map((l, i) => Math.abs(kept[i]!.y - l.y)).filter((g) => g > 0);
  const usual = lowerQuartile(gaps);
  let out = '';
  kept.forEach((l, i) => {
    if (i > 0) {
      const gap = Math.abs(kept[i - 1]!.y - l.y);
      out += usual > 0 && gap > usual * 1.5 ? '\n\n' : '\n';
    }
    out += l.text.trimEnd();
  });
  return out;
}

// The usual line spacing: paragraph gaps are the larger ones, so the lower quartile stays below them.
function lowerQuartile(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 4)]!;
}
