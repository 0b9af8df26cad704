import { sha256 } from '../../artifacts/hash.ts';
import { quantileSorted, sortedCopy } from '../evaluation/quantile.ts';
import { detectLanguage } from '../llm/language.ts';

/** One training example: what sentence-transformers reads as (anchor, positive, negative_1..k). */
export interface Example {
  queryId: string;
  chunkId: string;
  anchor: string;
  positive: string;
  negatives: string[];
  negativeIds: string[];
}

/**
 * Which side a chunk goes to: a hash of (seed, chunk id) against the dev fraction. Every query of a
 * chunk follows its chunk, and a chunk keeps its side when the corpus grows (no reshuffle).
 */
export function devChunks(chunkIds: Iterable<string>, devFraction: number, seed: number): Set<string> {
  const ids = [...new Set(chunkIds)].sort();
  const u = (id: string) => Number.parseInt(sha256(`${seed}:${id}`).slice(0, 13), 16) / 2 ** 52;
  const dev = new Set(ids.filter((id) => u(id) < devFraction));
  // A tiny corpus may draw no chunk for one side; move the nearest draw across so both sides exist.
  if (devFraction > 0 && dev.size === 0 && ids.length >= 2) {
    dev.add(ids.reduce((best, id) => (u(id) < u(best) ? id : best)));
  }
  if (devFraction < 1 && dev.size === ids.length && ids.length >= 2) {
    dev.delete(ids.reduce((best, id) => (u(id) > u(best) ? id : best)));
  }
  return dev;
}

export function splitByChunk(examples: readonly Example[], devFraction: number, seed: number): { train: Example[]; dev: Example[] } {
  const dev = devChunks(
    examples.map((e) => e.chunkId),
    devFraction,
    seed,
  );
  return { train: examples.filter((e) => !dev.has(e.chunkId)), dev: examples.filter((e) => dev.has(e.chunkId)) };
}

interface LengthStats {
  mean: number;
  p50: number;
  p90: number;
  max: number;
}

function lengths(texts: readonly string[]): LengthStats {
  const n = texts.map((t) => [...t].length);
  const s = sortedCopy(n);
  return {
    mean: Math.round(n.reduce((a, b) => a + b, 0) / (n.length || 1)),
    p50: Math.round(quantileSorted(s, 0.5) || 0),
    p90: Math.round(quantileSorted(s, 0.9) || 0),
    max: s.length ? (s[s.length - 1] as number) : 0,
  };
}

function languages(texts: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of texts) {
    const lang = detectLanguage(t) ?? 'other';
    out[lang] = (out[lang] ?? 0) + 1;
  }
  return out;
}

export interface SideSummary {
  rows: number;
  chunks: number;
  anchorChars: LengthStats;
  positiveChars: LengthStats;
  negativeChars: LengthStats;
  anchorLanguages: Record<string, number>;
  positiveLanguages: Record<string, number>;
}

export function summarize(rows: readonly Example[]): SideSummary {
  return {
    rows: rows.length,
    chunks: new Set(rows.map((r) => r.chunkId)).size,
    anchorChars: lengths(rows.map((r) => r.anchor)),
    positiveChars: lengths(rows.map((r) => r.positive)),
    negativeChars: lengths(rows.flatMap((r) => r.negatives)),
    anchorLanguages: languages(rows.map((r) => r.anchor)),
    positiveLanguages: languages(rows.map((r) => r.positive)),
  };
}

export interface CardInput {
  numNegatives: number;
  devFraction: number;
  seed: number;
  train: SideSummary;
  dev: SideSummary;
  dropped: Record<string, number>;
  mining: { params: unknown; stats: Record<string, unknown> };
  inputs: Record<string, string>;
}

const table = (s: SideSummary, key: 'anchorChars' | 'positiveChars' | 'negativeChars') =>
  `${s[key].mean} / ${s[key].p50} / ${s[key].p90} / ${s[key].max}`;

const langs = (l: Record<string, number>) =>
  Object.entries(l)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || '—';

/** dataset_card.md: what is in the dataset and what was filtered out on the way, for a person. */
export function datasetCard(c: CardInput): string {
  const negCols = Array.from({ length: c.numNegatives }, (_, i) => `negative_${i + 1}`).join(', ');
  const mining = c.mining.stats;
  return `# embedflow training dataset

Columns: \`anchor, positive${negCols ? `, ${negCols}` : ''}\` (texts, in the order sentence-transformers
losses such as MultipleNegativesRankingLoss read them), plus \`query_id, chunk_id, negative_ids\`.
Anchors are generated queries; positives the chunk each was written for; negatives mined hard negatives.

## Counts

| | train | dev |
|---|---:|---:|
| rows | ${c.train.rows} | ${c.dev.rows} |
| chunks (positives) | ${c.train.chunks} | ${c.dev.chunks} |

Split: grouped by chunk (${Math.round(c.devFraction * 100)}% of chunks to dev, by a seeded hash of the chunk id,
seed ${c.seed}), so every query of a chunk is on the same side and no positive chunk is on both.
Negatives come from the whole corpus, as in sentence-transformers' mine_hard_negatives.

## Lengths (characters: mean / median / p90 / max)

| | train | dev |
|---|---|---|
| anchor | ${table(c.train, 'anchorChars')} | ${table(c.dev, 'anchorChars')} |
| positive | ${table(c.train, 'positiveChars')} | ${table(c.dev, 'positiveChars')} |
| negative | ${table(c.train, 'negativeChars')} | ${table(c.dev, 'negativeChars')} |

## Languages (by script)

- anchors: train ${langs(c.train.anchorLanguages)}; dev ${langs(c.dev.anchorLanguages)}
- positives: train ${langs(c.train.positiveLanguages)}; dev ${langs(c.dev.positiveLanguages)}

## Filters applied

- Hard-negative mining (TopK-PercPos): parameters \`${JSON.stringify(c.mining.params)}\`
  - candidates removed as known positives (incl. text duplicates of a positive): ${mining.removedPositives ?? '?'}
  - candidates removed by the margin guard (score above margin × positive score): ${mining.removedByMargin ?? '?'}
  - queries with fewer negatives than asked: ${mining.queriesShort ?? '?'}
${Object.entries(c.dropped)
  .map(([why, n]) => `- rows dropped here, ${why}: ${n}`)
  .join('\n')}

## Inputs

${Object.entries(c.inputs)
  .map(([name, digest]) => `- ${name}: \`${digest}\``)
  .join('\n')}
`;
}
