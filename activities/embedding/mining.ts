import { sha256 } from '../../artifacts/hash.ts';
import { seededRandom, seededSample } from '../evaluation/bootstrap.ts';
import { quantileSorted, sortedCopy } from '../evaluation/quantile.ts';
import { normalizeQuery } from '../llm/textNorm.ts';
import type { Embeddings } from './encoder.ts';
import { type SearchOptions, chooseMethod, topK } from './search.ts';

/**
 * Hard-negative mining with sentence-transformers' mine_hard_negatives parameters and semantics
 * (num_negatives, range_min, range_max, absolute_margin, relative_margin, max_score, min_score,
 * sampling_strategy, here in camelCase), so a user who knows one knows the other; a parity test runs
 * both on the same embeddings. relativeMargin 0.05 is NV-Retriever's TopK-PercPos (95%).
 *
 * Per query: search the top candidates; remove every known positive of that query (its own chunk,
 * chunks of other rows with the same normalised query text, and chunks whose normalised text equals a
 * positive's: duplicates, which sentence-transformers removes by de-duplicating the corpus); drop
 * candidates too close to the weakest positive (the margins: likely unlabelled positives) or outside
 * [minScore, maxScore]; then ranks rangeMin..rangeMax of what is left are eligible and numNegatives
 * are taken, the best ones or a seeded random sample (sorted best first).
 */
export interface MiningOptions {
  numNegatives: number;
  rangeMin: number;
  /** Eligible ranks end here; default as sentence-transformers derives it (see resolvedRangeMax). */
  rangeMax?: number;
  /** Drop a candidate if score + absoluteMargin > positive score. */
  absoluteMargin?: number;
  /** Drop a candidate if score > positive − |positive| × relativeMargin (0.05: below 95% of the positive). */
  relativeMargin?: number;
  /** Drop a candidate scoring above this. */
  maxScore?: number;
  /** Drop a candidate scoring below this. */
  minScore?: number;
  samplingStrategy: 'top' | 'random';
  seed: number;
  /**
   * What a query short of numNegatives gets: nothing more ('none', as sentence-transformers), or the
   * rest drawn at random from chunks ranked below every searched candidate and below its margin
   * ('random'), so the queries a base cannot separate from their neighbours stay in the training set.
   */
  fillShort?: 'none' | 'random';
}

export interface MiningInput {
  queryIds: readonly string[];
  queryTexts: readonly string[];
  /** The chunk each query was written for. */
  positiveIds: readonly string[];
  chunkIds: readonly string[];
  chunkTexts: readonly string[];
  queries: Embeddings;
  chunks: Embeddings;
}

export interface MinedRow {
  /** Row of the input queries. */
  query: number;
  /** Row of the positive chunk. */
  positive: number;
  positiveScore: number;
  /** Chunk rows, best first. */
  negatives: number[];
  negativeScores: number[];
}

export interface Distribution {
  count: number;
  min: number;
  p10: number;
  p50: number;
  p90: number;
  max: number;
  mean: number;
}

export interface MiningStats {
  queries: number;
  /** Queries whose chunk is not in the chunks input (skipped). */
  queriesWithoutPositive: number;
  /** Queries that got numNegatives negatives. */
  queriesComplete: number;
  /** Queries that got fewer (kept in the output with what was found). */
  queriesShort: number;
  negatives: number;
  searchMethod: 'exact' | 'approximate';
  searchK: number;
  /** Candidates looked at (before any removal). */
  candidates: number;
  /** Removed because the chunk is a known positive of the query (incl. duplicates of a positive). */
  removedPositives: number;
  /** Of those, chunks that are only positives by being a text duplicate of one. */
  removedDuplicates: number;
  /** Removed by absoluteMargin or relativeMargin. */
  removedByMargin: number;
  /** Removed by maxScore or minScore. */
  removedByScore: number;
  /** Negatives drawn at random for short queries (fillShort 'random'). */
  filledAtRandom: number;
  /** The rangeMax used (given or derived). */
  rangeMax: number;
  scores: { positive: Distribution; negative: Distribution; removedByMargin: Distribution };
}

/**
 * rangeMax as sentence-transformers derives it when not given: room for the positives, and ten
 * candidates per negative when a filter (a margin or maxScore) may remove some, else just enough.
 */
export function resolvedRangeMax(o: MiningOptions, maxPositives: number): number {
  if (o.rangeMax !== undefined) return o.rangeMax;
  const filtered = o.absoluteMargin !== undefined || o.relativeMargin !== undefined || o.maxScore !== undefined;
  return o.rangeMin + (filtered ? 10 : 1) * o.numNegatives + maxPositives;
}

/**
 * The score above which a candidate is dropped for being too close to the positive, or +∞ without a
 * margin. The relative bound subtracts |positive| × relativeMargin so it also holds for negative scores.
 */
export function marginThreshold(positiveScore: number, o: Pick<MiningOptions, 'absoluteMargin' | 'relativeMargin'>): number {
  let t = Number.POSITIVE_INFINITY;
  if (o.absoluteMargin !== undefined) t = positiveScore - o.absoluteMargin;
  if (o.relativeMargin !== undefined) t = Math.min(t, positiveScore - Math.abs(positiveScore) * o.relativeMargin);
  return t;
}

function dot(a: Float32Array, ai: number, b: Float32Array, bi: number, dim: number): number {
  let s = 0;
  for (let j = 0; j < dim; j++) s += (a[ai + j] as number) * (b[bi + j] as number);
  return s;
}

function distribution(values: number[]): Distribution {
  const s = sortedCopy(values);
  const round = (x: number) => (Number.isFinite(x) ? Math.round(x * 1e4) / 1e4 : 0);
  return {
    count: s.length,
    min: round(s[0] ?? Number.NaN),
    p10: round(quantileSorted(s, 0.1)),
    p50: round(quantileSorted(s, 0.5)),
    p90: round(quantileSorted(s, 0.9)),
    max: round(s[s.length - 1] ?? Number.NaN),
    mean: round(values.reduce((a, b) => a + b, 0) / (values.length || 1)),
  };
}

/** Sets of chunk rows known to be positives, per query row; undefined where the query's chunk is unknown. */
export function knownPositives(input: Pick<MiningInput, 'queryTexts' | 'positiveIds' | 'chunkIds' | 'chunkTexts'>): {
  sets: Array<Set<number> | undefined>;
  duplicateOnly: Array<Set<number> | undefined>;
} {
  const chunkRow = new Map<string, number>();
  input.chunkIds.forEach((id, i) => chunkRow.set(id, i));
  const sameText = new Map<string, number[]>();
  input.chunkTexts.forEach((t, i) => {
    const k = normalizeQuery(t);
    const rows = sameText.get(k);
    if (rows) rows.push(i);
    else sameText.set(k, [i]);
  });
  // Every chunk any row with this normalised query text was written for.
  const byQuery = new Map<string, Set<number>>();
  input.queryTexts.forEach((t, i) => {
    const row = chunkRow.get(input.positiveIds[i] as string);
    if (row === undefined) return;
    const k = normalizeQuery(t);
    const set = byQuery.get(k) ?? new Set<number>();
    set.add(row);
    byQuery.set(k, set);
  });
  const sets: Array<Set<number> | undefined> = [];
  const duplicateOnly: Array<Set<number> | undefined> = [];
  input.queryTexts.forEach((t, i) => {
    if (!chunkRow.has(input.positiveIds[i] as string)) {
      sets.push(undefined);
      duplicateOnly.push(undefined);
      return;
    }
    const direct = byQuery.get(normalizeQuery(t)) as Set<number>;
    const all = new Set(direct);
    const dups = new Set<number>();
    for (const row of direct) {
      for (const twin of sameText.get(normalizeQuery(input.chunkTexts[row] as string)) ?? []) {
        if (!direct.has(twin)) dups.add(twin);
        all.add(twin);
      }
    }
    sets.push(all);
    duplicateOnly.push(dups);
  });
  return { sets, duplicateOnly };
}

/** Seeded draws per missing negative before a short query is left short (most unsearched chunks qualify). */
const FILL_DRAWS_PER_NEGATIVE = 64;

/**
 * Up to k distinct rows of [0, n) drawn with a seeded generator, keeping those `allowed` whose score
 * is `eligible`. The draws are bounded, so a query with no eligible chunk costs the same as any
 * other and ends short rather than scoring the whole corpus.
 */
function randomBelow(
  n: number,
  k: number,
  o: { seed: number; allowed: (row: number) => boolean; score: (row: number) => number; eligible: (s: number) => boolean },
): Array<{ row: number; s: number }> {
  const rand = seededRandom(o.seed);
  const tried = new Set<number>();
  const out: Array<{ row: number; s: number }> = [];
  for (let draw = 0; draw < FILL_DRAWS_PER_NEGATIVE * k && out.length < k; draw++) {
    const row = Math.floor(rand() * n);
    if (tried.has(row)) continue;
    tried.add(row);
    if (!o.allowed(row)) continue;
    const s = o.score(row);
    if (o.eligible(s)) out.push({ row, s });
  }
  return out;
}

/** minScore / maxScore, as sentence-transformers applies them. */
function outsideScoreBounds(s: number, o: Pick<MiningOptions, 'maxScore' | 'minScore'>): boolean {
  return (o.maxScore !== undefined && s > o.maxScore) || (o.minScore !== undefined && s < o.minScore);
}

/** Cap on how many slots positives may take from the searched candidates (see searchK). */
const MAX_POSITIVE_SLOTS = 64;

export async function mineHardNegatives(
  input: MiningInput,
  opts: MiningOptions,
  search: SearchOptions = {},
): Promise<{ rows: MinedRow[]; stats: MiningStats }> {
  const { dim } = input.queries;
  const { sets, duplicateOnly } = knownPositives(input);
  const chunkRow = new Map<string, number>();
  input.chunkIds.forEach((id, i) => chunkRow.set(id, i));
  const maxPositives = Math.min(MAX_POSITIVE_SLOTS, Math.max(0, ...sets.map((s) => s?.size ?? 0)));
  const rangeMax = resolvedRangeMax(opts, maxPositives);
  // Room for the positives (and one more) on top of rangeMax, as sentence-transformers searches;
  // capped, so one query written for hundreds of chunks cannot make every query's search that deep
  // (such a query simply finds fewer negatives and is counted as short).
  const searchK = Math.min(input.chunks.count, rangeMax + maxPositives + 1);
  const method = chooseMethod(input.queries.count, input.chunks.count, search);
  const top = await topK(input.queries, input.chunks, searchK, { ...search, method });

  const rows: MinedRow[] = [];
  const posScores: number[] = [];
  const negScores: number[] = [];
  const guardScores: number[] = [];
  const stats = {
    queriesWithoutPositive: 0,
    queriesComplete: 0,
    queriesShort: 0,
    negatives: 0,
    candidates: 0,
    removedPositives: 0,
    removedDuplicates: 0,
    removedByMargin: 0,
    removedByScore: 0,
    filledAtRandom: 0,
  };
  for (let q = 0; q < input.queries.count; q++) {
    const positives = sets[q];
    if (!positives) {
      stats.queriesWithoutPositive++;
      continue;
    }
    const positive = chunkRow.get(input.positiveIds[q] as string) as number;
    const score = (row: number) => dot(input.queries.data, q * dim, input.chunks.data, row * dim, dim);
    const positiveScore = score(positive);
    // Several positives: the guard uses the weakest, as sentence-transformers does (the safer side).
    let weakest = positiveScore;
    for (const p of positives) weakest = Math.min(weakest, score(p));
    const threshold = marginThreshold(weakest, opts);

    const eligible: number[] = [];
    const eligibleScores: number[] = [];
    for (let j = 0; j < searchK && eligible.length < rangeMax; j++) {
      const row = top.indices[q * searchK + j] as number;
      if (row < 0) break;
      const s = top.scores[q * searchK + j] as number;
      stats.candidates++;
      if (positives.has(row)) {
        stats.removedPositives++;
        if (duplicateOnly[q]?.has(row)) stats.removedDuplicates++;
        continue;
      }
      if (s > threshold) {
        stats.removedByMargin++;
        guardScores.push(s);
        continue;
      }
      if (outsideScoreBounds(s, opts)) {
        stats.removedByScore++;
        continue;
      }
      eligible.push(row);
      eligibleScores.push(s);
    }
    let picks = eligible.slice(opts.rangeMin).map((row, i) => ({ row, s: eligibleScores[opts.rangeMin + i] as number }));
    if (opts.samplingStrategy === 'random' && picks.length > opts.numNegatives) {
      const seed = Number.parseInt(sha256(`${opts.seed}:${input.queryIds[q]}`).slice(0, 8), 16);
      // seededSample returns ascending positions of a best-first list: the sample stays best first.
      picks = Array.from(seededSample(picks.length, opts.numNegatives, seed), (i) => picks[i] as { row: number; s: number });
    } else {
      picks = picks.slice(0, opts.numNegatives);
    }
    if (opts.fillShort === 'random' && picks.length < opts.numNegatives) {
      const searched = new Set<number>();
      for (let j = 0; j < searchK; j++) searched.add(top.indices[q * searchK + j] as number);
      const fill = randomBelow(input.chunks.count, opts.numNegatives - picks.length, {
        seed: Number.parseInt(sha256(`fill:${opts.seed}:${input.queryIds[q]}`).slice(0, 8), 16),
        allowed: (row) => !searched.has(row) && !positives.has(row),
        score,
        eligible: (s) => s <= threshold && !outsideScoreBounds(s, opts),
      });
      stats.filledAtRandom += fill.length;
      picks = [...picks, ...fill].sort((a, b) => b.s - a.s);
    }
    if (picks.length === opts.numNegatives) stats.queriesComplete++;
    else stats.queriesShort++;
    stats.negatives += picks.length;
    posScores.push(positiveScore);
    for (const p of picks) negScores.push(p.s);
    rows.push({ query: q, positive, positiveScore, negatives: picks.map((p) => p.row), negativeScores: picks.map((p) => p.s) });
  }
  return {
    rows,
    stats: {
      queries: input.queries.count,
      ...stats,
      searchMethod: method,
      searchK,
      rangeMax,
      scores: { positive: distribution(posScores), negative: distribution(negScores), removedByMargin: distribution(guardScores) },
    },
  };
}
