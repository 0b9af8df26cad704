import type { Language } from './types.ts';

/**
 * Script-based language checks, enough to tell Japanese from English and to catch a model that
 * answered in the wrong language or in symbols. A query of kanji alone ("東大寺 大仏") is Japanese.
 */

export interface ScriptCounts {
  kana: number;
  han: number;
  latin: number;
  /** Letters of any other script (Hangul, Cyrillic...). */
  other: number;
}

export function scriptCounts(text: string): ScriptCounts {
  const c: ScriptCounts = { kana: 0, han: 0, latin: 0, other: 0 };
  for (const ch of text) {
    if (/\p{Script=Hiragana}|\p{Script=Katakana}/u.test(ch) && ch !== 'ー' && ch !== '・') c.kana++;
    else if (/\p{Script=Han}/u.test(ch)) c.han++;
    else if (/\p{Script=Latin}/u.test(ch)) c.latin++;
    else if (/\p{L}/u.test(ch)) c.other++;
  }
  return c;
}

/** The language a text is written in, or undefined when it is neither (or has no letters). */
export function detectLanguage(text: string): Language | undefined {
  const c = scriptCounts(text);
  const letters = c.kana + c.han + c.latin + c.other;
  if (letters === 0) return undefined;
  // Japanese mixes in Latin words (product names, "API") and may be all kanji ("東大寺 大仏"); kana
  // is what tells it from Chinese, so with kana a quarter of the letters is enough.
  if (c.kana > 0) return (c.kana + c.han) / letters >= 0.25 ? 'ja' : undefined;
  if (c.han > 0) return c.han / letters >= 0.5 ? 'ja' : undefined;
  return c.latin / letters >= 0.9 ? 'en' : undefined;
}

/** A corpus's language from (a sample of) its chunks: Japanese as soon as a fair share of text is. */
export function corpusLanguage(texts: readonly string[]): Language {
  let ja = 0;
  let en = 0;
  for (const t of texts.slice(0, 200)) {
    const c = scriptCounts(t);
    ja += c.kana + c.han;
    en += c.latin;
  }
  // Latin letters are ~4x denser per idea than kana/kanji, so weigh them down before comparing.
  return ja * 4 >= en ? (ja > 0 ? 'ja' : 'en') : 'en';
}
