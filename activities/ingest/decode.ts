import Encoding from 'encoding-japanese';

export type Decoded = { ok: true; text: string; encoding: string } | { ok: false; reason: string };

// encoding-japanese's names → WHATWG labels (Node's TextDecoder decodes them; shift_jis is Windows-31J).
const JAPANESE: Record<string, string> = { SJIS: 'shift_jis', EUCJP: 'euc-jp', JIS: 'iso-2022-jp' };

/** More undecodable sequences than this (per character) means the guess was wrong or the file is not text. */
const MAX_REPLACEMENT_RATIO = 0.001;
/** Control characters other than tab, newlines and form feed beyond this ratio: a binary file. */
const MAX_CONTROL_RATIO = 0.01;

/**
 * Decode a text file's bytes: a BOM if there is one, else UTF-8 when the bytes are valid UTF-8, else
 * the charset an HTML file declares, else the Japanese legacy encodings (Shift_JIS, EUC-JP,
 * ISO-2022-JP) as encoding-japanese detects them. Anything else is reported, never guessed at.
 */
export function decodeText(bytes: Uint8Array, opts: { declaredCharset?: string | undefined } = {}): Decoded {
  const bom = bomEncoding(bytes);
  if (bom) return checked(new TextDecoder(bom).decode(bytes), bom);
  if (bytes.indexOf(0) !== -1) return { ok: false, reason: 'binary file (contains NUL bytes)' };
  // ISO-2022-JP is 7-bit, so valid UTF-8 too: its escape sequences give it away.
  if (bytes.indexOf(0x1b) !== -1 && Encoding.detect(bytes) === 'JIS') return checked(new TextDecoder('iso-2022-jp').decode(bytes), 'iso-2022-jp');
  try {
    return checked(new TextDecoder('utf-8', { fatal: true }).decode(bytes), 'utf-8');
  } catch {
    // not UTF-8: try what the file declares, then detection
  }
  const declared = opts.declaredCharset && supportedLabel(opts.declaredCharset);
  if (declared && declared !== 'utf-8') {
    const r = checked(new TextDecoder(declared).decode(bytes), declared);
    if (r.ok) return r;
  }
  const detected = Encoding.detect(bytes);
  const label = typeof detected === 'string' ? JAPANESE[detected] : undefined;
  if (!label) {
    return { ok: false, reason: 'not text in a supported encoding (UTF-8/16, Shift_JIS, EUC-JP, ISO-2022-JP): binary file?' };
  }
  return checked(new TextDecoder(label).decode(bytes), label);
}

function bomEncoding(b: Uint8Array): string | undefined {
  if (b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return 'utf-8';
  if (b[0] === 0xff && b[1] === 0xfe) return 'utf-16le';
  if (b[0] === 0xfe && b[1] === 0xff) return 'utf-16be';
  return undefined;
}

function supportedLabel(label: string): string | undefined {
  try {
    return new TextDecoder(label.trim().toLowerCase()).encoding;
  } catch {
    return undefined;
  }
}

function checked(text: string, encoding: string): Decoded {
  let replacements = 0;
  let controls = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0xfffd) replacements++;
    else if ((c < 0x20 && c !== 9 && c !== 10 && c !== 12 && c !== 13) || c === 0x7f) controls++;
  }
  if (replacements > Math.max(1, text.length * MAX_REPLACEMENT_RATIO)) {
    return { ok: false, reason: `undecodable as ${encoding} (${replacements} invalid byte sequences)` };
  }
  if (controls > Math.max(2, text.length * MAX_CONTROL_RATIO)) {
    return { ok: false, reason: `binary file (${controls} control characters)` };
  }
  return { ok: true, text, encoding };
}

/** The charset an HTML file declares in its first bytes (<meta charset>, http-equiv, XML declaration). */
export function declaredHtmlCharset(bytes: Uint8Array): string | undefined {
  const head = new TextDecoder('latin1').decode(bytes.subarray(0, 4096));
  return /<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)/i.exec(head)?.[1] ?? /<\?xml[^>]+encoding\s*=\s*["']([\w.:-]+)/i.exec(head)?.[1];
}
