import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { declaredHtmlCharset, decodeText } from '../../activities/ingest/decode.ts';
import { extractHtml } from '../../activities/ingest/html.ts';
import { normalizeText } from '../../activities/ingest/normalize.ts';
import { rawSpanToTextSpan, serializeOffsetMap } from '../../activities/ingest/offsets.ts';

/** Bytes of `text` in a legacy encoding, made by iconv (a real tool, not our own encoder). */
function iconv(text: string, to: string): Uint8Array {
  return new Uint8Array(execFileSync('iconv', ['-f', 'UTF-8', '-t', to], { input: text }));
}

describe('decodeText', () => {
  const ja = '日本語の文書です。半角ｶﾀｶﾅと①も。\n二行目。\n';

  it('takes a BOM first, then strict UTF-8, then Shift_JIS / EUC-JP / ISO-2022-JP by detection', () => {
    expect(decodeText(new Uint8Array([0xef, 0xbb, 0xbf, ...Buffer.from(ja)]))).toEqual({ ok: true, text: ja, encoding: 'utf-8' });
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(ja, 'utf16le')]);
    expect(decodeText(new Uint8Array(utf16))).toEqual({ ok: true, text: ja, encoding: 'utf-16le' });
    expect(decodeText(iconv(ja, 'CP932'))).toEqual({ ok: true, text: ja, encoding: 'shift_jis' });
    expect(decodeText(iconv('日本語の文書です。\n二行目。\n', 'EUC-JP'))).toMatchObject({ ok: true, encoding: 'euc-jp' });
    const jis = '日本語の文書です。\n二行目、ＡＢＣ。\n';
    expect(decodeText(iconv(jis, 'ISO-2022-JP'))).toEqual({ ok: true, text: jis, encoding: 'iso-2022-jp' });
  });

  it('follows the charset an HTML file declares when its bytes are not UTF-8', () => {
    const html = `<html><head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS"></head><body>${ja}</body></html>`;
    const bytes = iconv(html, 'CP932');
    expect(declaredHtmlCharset(bytes)).toBe('Shift_JIS');
    expect(decodeText(bytes, { declaredCharset: 'Shift_JIS' })).toMatchObject({ ok: true, encoding: 'shift_jis' });
  });

  it('refuses binary data instead of guessing', () => {
    expect(decodeText(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 13]))).toEqual({ ok: false, reason: 'binary file (contains NUL bytes)' });
    const noise = new Uint8Array(2000).map((_, i) => (i * 37 + 11) % 256 || 1);
    expect(decodeText(noise).ok).toBe(false);
  });
});

describe('normalizeText', () => {
  it('records every length change, so raw spans map onto the normalised text', () => {
    const raw = 'ｶﾞｲﾄﾞは１０㌔、①番。\n𝐀𝐁 ﬁne ｶﾞ\n変わらない行\n';
    const { text, step } = normalizeText(raw, 'NFKC');
    expect(text).toBe(raw.normalize('NFKC'));
    const map = { steps: [step] };
    const span = (needle: string): string => {
      const s = raw.indexOf(needle);
      return text.slice(...rawSpanToTextSpan(map, s, s + needle.length));
    };
    expect(span('ｶﾞｲﾄﾞ')).toBe('ガイド');
    expect(span('㌔')).toBe('キロ');
    expect(span('𝐀𝐁')).toBe('AB');
    expect(span('ﬁne')).toBe('fine');
    expect(span('変わらない行')).toBe('変わらない行');
    // The map survives its JSON form.
    expect(rawSpanToTextSpan(serializeOffsetMap(map), raw.indexOf('㌔'), raw.indexOf('㌔') + 1)).toEqual(rawSpanToTextSpan(map, raw.indexOf('㌔'), raw.indexOf('㌔') + 1));
  });

  it('is the identity map when nothing changes or normalisation is off', () => {
    expect(normalizeText('abc', 'NFKC').step.r).toEqual([0]);
    expect(normalizeText('１０㌔', 'none').text).toBe('１０㌔');
  });
});

describe('extractHtml', () => {
  it('prefers <main> or a lone <article>, drops hidden and navigation parts, keeps <pre> as it is', () => {
    const src = [
      '<body><div class="breadcrumbs">ホーム &gt; 本</div>',
      '<article><header><h1>記事の題</h1></header>',
      '<p hidden>隠れた文</p><div aria-hidden="true">飾り</div><div role="navigation">目次</div>',
      '<p>本文の一段落目です。<br>改行のあとです。</p>',
      '<pre>  字下げ\n    そのまま</pre>',
      '<table><tr><td>一</td><td>二</td></tr><tr><td>三</td><td>四</td></tr></table>',
      '</article><footer>フッター</footer></body>',
    ].join('\n');
    const { text, title } = extractHtml(src);
    expect(title).toBe('記事の題');
    expect(text).toBe('# 記事の題\n\n本文の一段落目です。\n改行のあとです。\n\n  字下げ\n    そのまま\n\n一 二\n三 四');
  });

  it('maps source spans (entities, CRLF, collapsed whitespace) onto the text', () => {
    const src = '<p>caf&eacute; &amp; 喫茶\r\n店の\r\n   名前</p>';
    const { text, step } = extractHtml(src);
    expect(text).toBe('café & 喫茶店の名前');
    const map = { steps: [step] };
    const span = (needle: string): string => {
      const s = src.indexOf(needle);
      return text.slice(...rawSpanToTextSpan(map, s, s + needle.length));
    };
    expect(span('caf&eacute;')).toBe('café');
    expect(span('&amp;')).toBe('&');
    expect(span('喫茶\r\n店の')).toBe('喫茶店の');
    expect(span('名前')).toBe('名前');
    expect(span('<p>')).toBe('');
  });
});
