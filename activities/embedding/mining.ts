import { sha256 } from '../../artifacts/hash.ts';
import { seededSample } from '../evaluation/bootstrap.ts';
import { quantileSorted, sortedCopy } from '../evaluation/quantile.ts';
import { normalizeQuery } from '../llm/textNorm.ts';
import type { Embeddings } from './encoder.ts';
import { type SearchOptions, chooseMethod, topK } from './search.ts';

/**
 * Hard-negative mining with the NV-Retriever TopK-PercPos guard, with sentence-transformers'
 * mine_hard_negatives semantics for the knobs (num_negatives, range_min/range_max, relative margin,
 * top/random sampling), so a user who knows one knows the other.
 *
 * Per query: search the top candidates; remove every known positive of that query (its own chunk,
 * chunks of other rows with the same normalised query text, and chunks whose normalised text equals a
 * positive's: exact duplicates); drop candidates scoring above margin × positive score (likely false
 * negatives); then ranks rangeMin..rangeMax of what is left are eligible and numNegatives are taken,
 * the best ones or a seeded random sample.
 */
export interface MiningOptions {
  numNegatives: number;
  /** TopK-PercPos: keep a candidate only if score ≤ margin × positive score (sign-safe, see below). */
  margin: number;
  rangeMin: number;
  /** Eligible ranks end here (default rangeMin + 10 × numNegatives, as sentence-transformers does with a margin). */
  rangeMax?: number;
  sampling: 'top' | 'random';
  seed: number;
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
  /** Removed by the TopK-PercPos guard. */
  removedByMargin: number;
  scores: { positive: Distribution; negative: Distribution; removedByMargin: Distribution };
}

export function resolvedRangeMax(o: MiningOptions): number {
  return o.rangeMax ?? o.rangeMin + 10 * o.numNegatives;
}

/** The score above which a candidate is dropped: margin × positive, computed so it also holds for negative scores. */
export function marginThreshold(positiveScore: number, margin: number): number {
  return positiveScore - Math.abs(positiveScore) * (1 - margin);
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

/** Cap on how many slots positives may take from the searched candidates (see searchK). */
const MAX_POSITIVE_SLOTS = 64;

export async function mineHardNegatives(
  input: MiningInput,
  opts: MiningOptions,
  search: SearchOptions = {},
): Promise<{ rows: MinedRow[]; stats: MiningStats }> {
  const rangeMax = resolvedRangeMax(opts);
  const { dim } = input.queries;
  const { sets, duplicateOnly } = knownPositives(input);
  const chunkRow = new Map<string, number>();
  input.chunkIds.forEach((id, i) => chunkRow.set(id, i));
  const maxPositives = Math.max(0, ...sets.map((s) => s?.size ?? 0));
  // Room for the positives on top of rangeMax, as sentence-transformers leaves (capped, so one query
  // written for hundreds of chunks cannot make every query's search that deep; such a query simply
  // finds fewer negatives and is counted as short).
  const searchK = Math.min(input.chunks.count, rangeMax + Math.min(maxPositives, MAX_POSITIVE_SLOTS));
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
    const threshold = marginThreshold(weakest, opts.margin);

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
      eligible.push(row);
      eligibleScores.push(s);
    }
    let picks = eligible.slice(opts.rangeMin).map((row, i) => ({ row, s: eligibleScores[opts.rangeMin + i] as number }));
    if (opts.sampling === 'random' && picks.length > opts.numNegatives) {
      const seed = Number.parseInt(sha256(`${opts.seed}:${input.queryIds[q]}`).slice(0, 8), 16);
      picks = Array.from(seededSample(picks.length, opts.numNegatives, seed), (i) => picks[i] as { row: number; s: number });
    } else {
      picks = picks.slice(0, opts.numNegatives);
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
      scores: { positive: distribution(posScores), negative: distribution(negScores), removedByMargin: distribution(guardScores) },
    },
  };
}
