/**
 * A sentence of a chunk turned into the question it answers, by rule: one answer-like span (a number
 * with its counter, a quoted term, a katakana or kanji name) is replaced by the interrogative that asks
 * for it, and the sentence ends as a question (…か。). 「盧舎那仏像は聖武天皇の発願で造立された。」 →
 * 「盧舎那仏像は誰の発願で造立されたか。」
 *
 * Why: a strong multilingual base already matches a copied sentence to its chunk, so plain ICT pairs
 * teach it little and pull it away from the question-shaped text users type (measured: naive ICT lowered
 * multilingual-e5-small's Recall@1 on human questions). A cloze question keeps ICT's price (no LLM, instant,
 * deterministic) but reads like a question and no longer contains its own answer, so the pair rewards
 * matching the context of a fact rather than repeating it. Japanese only: other sentences are returned
 * unchanged (null), and the caller keeps them as plain ICT queries.
 */

interface Rule {
  /** The answer-like span: the whole match is replaced by the interrogative. */
  pattern: RegExp;
  ask: (m: RegExpExecArray) => string;
}

const DIGITS = '[0-9０-９一二三四五六七八九十百千万億兆〇・.,，．]';
// A date, not a duration (1300年前, 10年間): those ask 何年.
const DATE = new RegExp(`(${DIGITS}+年(?:${DIGITS}+月)?(?:${DIGITS}+日)?)(?![前後間代目以])`, 'u');
const WHEN_COUNTERS = new Map([
  ['世紀', '何世紀'],
  ['年代', '何年代'],
  ['時代', 'いつの時代'],
]);
const COUNTER = new RegExp(
  `(${DIGITS}+)(世紀|年代|年前|年後|年間|人|名|歳|才|メートル|キロメートル|センチメートル|ミリメートル|キロ|トン|グラム|キログラム|円|ドル|個|回|度|番目|番|位|種類?|冊|隻|台|件|頭|羽|匹|本|枚|階|つ|カ所|か所|箇所|ヶ国|か国|カ国|パーセント|%|％|時間|分|秒|日間|週間|ヶ月|か月|カ月|年間|km|m|kg|cm|mm)`,
  'u',
);
const QUOTED = /(「[^「」]{1,30}」|『[^『』]{1,30}』)/u;
const PLACE_SUFFIX = /(?:県|府|都|道|市|町|村|区|郡|国|州|島|山|川|湖|駅|港|城|寺|神社|宮|大学|空港)$/u;
const PERSON_CONTEXT = /^(?:は|が)?(?:[^、。]{0,12})(?:生まれ|死去|即位|就任|発願|設立|創設|建立|建設|開発|発明|発見|設計|制作|執筆|創業|指揮|作曲|作詞|監督|主演|受賞|著|作)/u;
// A name starts and ends at a change of script: ポルトガル語 is one word, not ポルトガル + 語.
const KATAKANA = /(?<![ァ-ヴー・一-龯々])([ァ-ヴー・]{3,})(?![一-龯々])/u;
const KANJI = /(?<![0-9０-９一-龯々〆ヵヶァ-ヴー])([一-龯々〆ヵヶ]{2,8})(?=は|が|を|に|で|と|の|へ|から|まで|より)/u;

const RULES: Rule[] = [
  { pattern: DATE, ask: () => 'いつ' },
  { pattern: COUNTER, ask: (m) => WHEN_COUNTERS.get(m[2]!) ?? `何${m[2]}` },
  { pattern: QUOTED, ask: () => '何' },
  { pattern: KATAKANA, ask: () => '何' },
  {
    pattern: KANJI,
    ask: (m) => {
      const span = m[1]!;
      const after = m.input.slice(m.index + span.length);
      // A place is asked with どこ where it is one (…で, …に, …から); as a subject it is a 何.
      if (PLACE_SUFFIX.test(span) && /^(?:で|に|へ|から|まで|より)/u.test(after)) return 'どこ';
      return PERSON_CONTEXT.test(after) ? '誰' : '何';
    },
  },
];

const JAPANESE = /[\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Han}]/u;
// Questions longer than this read like passages (real questions are short): such sentences get none.
const MAX_CHARS = 100;

/**
 * The question `sentence` answers, or null when no rule applies (not Japanese, no answer-like span, or
 * nothing of the sentence would remain). `pick` chooses among the spans that match (0 ≤ pick < 1), so a
 * seeded caller gets varied question types across a corpus and the same ones on every run.
 */
export function clozeQuestion(sentence: string, pick: number): string | null {
  // Asides in brackets (readings, dates, originals; nested too) are what questions leave out.
  let text = sentence;
  for (let prev = ''; prev !== text; ) [prev, text] = [text, text.replace(/[（(][^（()）]*[)）]/gu, '')];
  text = text.trim().replace(/[。．.!！?？]+$/u, '');
  if (!JAPANESE.test(text)) return null;
  const matches: Array<{ m: RegExpExecArray; rule: Rule }> = [];
  for (const rule of RULES) {
    for (const m of text.matchAll(new RegExp(rule.pattern.source, 'gu'))) matches.push({ m: m as RegExpExecArray, rule });
  }
  if (matches.length === 0) return null;
  const { m, rule } = matches[Math.min(matches.length - 1, Math.floor(pick * matches.length))]!;
  const start = m.index;
  const ask = rule.ask(m);
  // いつに reads wrong: いつ takes no particle.
  const rest = text.slice(start + m[0].length).replace(ask === 'いつ' ? /^に/u : /^$/u, '');
  const asked = shorten(text.slice(0, start) + ask + rest, start);
  if (asked === null || asked.replace(/何|いつ|どこ|誰|[、\s]/gu, '').length < 4) return null;
  return endAsQuestion(asked);
}

/** Long sentences keep the clause that holds the interrogative and what follows it, or nothing. */
function shorten(text: string, at: number): string | null {
  if (text.length <= MAX_CHARS) return text;
  const before = text.lastIndexOf('、', at);
  const cut = before >= 0 ? text.slice(before + 1) : text;
  return cut.length <= MAX_CHARS ? cut : null;
}

function endAsQuestion(text: string): string {
  const t = text.replace(/である$/u, 'か').replace(/です$/u, 'ですか').replace(/だ$/u, 'か');
  return /か$/u.test(t) ? `${t}。` : `${t}か。`;
}
