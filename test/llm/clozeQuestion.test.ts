import { describe, expect, it } from 'vitest';
import { clozeQuestion } from '../../activities/llm/clozeQuestion.ts';
import { IctProvider } from '../../activities/llm/ict.ts';

describe('cloze questions from a chunk’s sentences', () => {
  it('asks for the answer-like span with the interrogative that fits it, and ends as a question', () => {
    expect(clozeQuestion('盧舎那仏像は1300年前に造られた。', 0)).toBe('盧舎那仏像は何年前に造られたか。');
    expect(clozeQuestion('青葉川では十四か所で水質を測定している。', 0)).toBe('青葉川では何か所で水質を測定しているか。');
    expect(clozeQuestion('大仏の高さは約15メートルである。', 0)).toBe('大仏の高さは約何メートルか。');
    expect(clozeQuestion('調査は2016年4月に始まった。', 0)).toBe('調査はいつ始まったか。');
    expect(clozeQuestion('この寺は聖武天皇が建立した。', 0.99)).toBe('この寺は誰が建立したか。');
    // A place as a subject is a 何, where it is one a どこ.
    expect(clozeQuestion('東大寺は奈良県にある寺院である。', 0)).toBe('何は奈良県にある寺院か。');
    expect(clozeQuestion('大会は大阪市で開かれた。', 0.99)).toBe('大会はどこで開かれたか。');
  });

  it('leaves bracketed asides out and keeps a mixed-script word whole', () => {
    const q = clozeQuestion('マゼラン(ポルトガル語名はマガリャンイス)はポルトガル語を話した。', 0);
    expect(q).not.toContain('(');
    expect(q).not.toContain('ポルトガル何');
  });

  it('returns null where no rule applies: not Japanese, nothing answer-like, or too long to read as a question', () => {
    expect(clozeQuestion('The survey started in 2016.', 0)).toBeNull();
    expect(clozeQuestion('すべてはうまくいった。', 0)).toBeNull();
    expect(clozeQuestion(`青葉川は${'とても'.repeat(60)}長い川である。`, 0)).toBeNull();
  });

  it('the ict provider in question form asks questions, the same ones on every run', async () => {
    const chunk = { chunkId: 'c1', text: '青葉川では十四地点で水質を測定している。上流域のBODは〇・八ミリグラムであった。調査は2016年に始まった。' };
    const plan = [{ style: 'question' as const, count: 3 }];
    const first = await new IctProvider('question').generate(chunk as never, plan as never, 0);
    const again = await new IctProvider('question').generate(chunk as never, plan as never, 0);
    expect(first.queries.map((q) => q.text)).toEqual(again.queries.map((q) => q.text));
    expect(first.queries.every((q) => /か。$/u.test(q.text))).toBe(true);
    const sentences = await new IctProvider('sentence').generate(chunk as never, plan as never, 0);
    expect(sentences.queries.some((q) => q.text.endsWith('た。') || q.text.endsWith('る。'))).toBe(true);
  });
});
