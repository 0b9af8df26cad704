import { readFile, stat } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { sha256 } from '../../artifacts/hash.ts';
import type { DocumentRow } from '../artifactKinds/documentsArtifact.ts';
import { type CorpusFile, readError } from './corpus.ts';
import { declaredHtmlCharset, decodeText } from './decode.ts';
import { extractHtml } from './html.ts';
import { type NormalizationForm, normalizeText } from './normalize.ts';
import { type OffsetMap, type OffsetStep, rawSpanToTextSpan, serializeOffsetMap } from './offsets.ts';
import { extractPdf } from './pdf.ts';

export type ReadResult = { ok: true; doc: DocumentRow; encoding: string } | { ok: false; reason: string };

export function docId(path: string): string {
  return sha256(path).slice(0, 16);
}

interface Source {
  raw: string;
  extracted: string;
  encoding: string;
  title: string;
  steps: OffsetStep[];
  pageStarts?: number[];
}

/** Read one corpus file into a document row, or say why it cannot be read. */
export async function readDocument(file: CorpusFile, form: NormalizationForm, maxTextBytes = Infinity): Promise<ReadResult> {
  const src = await readSource(file, maxTextBytes);
  if ('reason' in src) return { ok: false, reason: src.reason };
  const { raw, extracted, encoding, steps, pageStarts } = src;
  if (!/\S/.test(extracted)) return { ok: false, reason: file.format === 'html' ? 'no main text' : 'no text (empty or whitespace only)' };

  const norm = normalizeText(extracted, form);
  steps.push(norm.step);
  const map: OffsetMap = { steps };
  const text = norm.text;
  const title = (src.title || guessTitle(text, file)).normalize(form === 'none' ? 'NFC' : form).slice(0, 300);
  const pages = pageStarts ? JSON.stringify(pageStarts.map((p) => rawSpanToTextSpan({ steps: [norm.step] }, p, p)[0])) : null;
  return {
    ok: true,
    encoding,
    doc: {
      doc_id: docId(file.path),
      path: file.path,
      format: file.format,
      title,
      content_hash: sha256(text),
      text,
      raw_text: raw,
      offset_map: serializeOffsetMap(map),
      pages,
    },
  };
}

/**
 * The file's text before normalisation (its bytes are dropped here: a huge file is held once, not twice).
 * Text files over `maxTextBytes` are refused before they are read, PDFs once their text is extracted:
 * a file that size is a data dump, not a document, and would cost gigabytes of memory downstream.
 */
async function readSource(file: CorpusFile, maxTextBytes: number): Promise<Source | { reason: string }> {
  let bytes: Uint8Array;
  try {
    const size = (await stat(file.abs)).size;
    if (file.format !== 'pdf' && size > maxTextBytes) return { reason: tooLarge(size, maxTextBytes) };
    bytes = new Uint8Array(await readFile(file.abs));
  } catch (err) {
    return { reason: readError(err) };
  }
  if (bytes.length === 0) return { reason: 'empty file' };
  if (file.format === 'pdf') {
    const pdf = await extractPdf(bytes);
    if (!pdf.ok) return pdf;
    const textBytes = Buffer.byteLength(pdf.text);
    if (textBytes > maxTextBytes) return { reason: tooLarge(textBytes, maxTextBytes, 'of extracted text') };
    return { raw: pdf.text, extracted: pdf.text, encoding: 'pdf', title: pdf.title, steps: [], pageStarts: pdf.pageStarts };
  }
  const decoded = decodeText(bytes, { declaredCharset: file.format === 'html' ? declaredHtmlCharset(bytes) : undefined });
  if (!decoded.ok) return decoded;
  if (file.format !== 'html') return { raw: decoded.text, extracted: decoded.text, encoding: decoded.encoding, title: '', steps: [] };
  const html = extractHtml(decoded.text);
  return { raw: decoded.text, extracted: html.text, encoding: decoded.encoding, title: html.title, steps: [html.step] };
}

function tooLarge(bytes: number, limit: number, what = ''): string {
  const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MB`;
  return `too large: ${mb(bytes)}${what ? ` ${what}` : ''}, over the ${mb(limit)} limit (ingest param maxDocumentMB); split the file or raise the limit`;
}

/** Markdown (and HTML, whose headings arrive as Markdown): the first heading; else the first line, if short. */
function guessTitle(text: string, file: CorpusFile): string {
  const heading = /^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$/m.exec(text.slice(0, 20_000))?.[1];
  if (heading && (file.format === 'md' || file.format === 'html')) return heading.trim();
  const first = text.trimStart().split('\n', 1)[0]?.trim() ?? '';
  if (first && first.length <= 120) return first;
  return basename(file.path, extname(file.path));
}
