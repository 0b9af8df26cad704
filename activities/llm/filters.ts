import { detectLanguage } from './language.ts';
import type { QueryRow } from '../artifactKinds/queriesArtifact.ts';
import type { Language } from './types.ts';
import { NearDuplicateIndex, normalizeQuery } from './textNorm.ts';

/**
 * The query filters, in the order they run (cheap first; the round trip, which embeds every text,
 * last and only on what is left). Each removes what it names; the first query of a duplicate group
 * (in artifact order) is the one kept.
 */

export const FILTERS = ['exactDuplicate', 'trainingDuplicate', 'tooShort', 'tooLong', 'wrongLanguage', 'nearDuplicate', 'roundTrip'] as const;
export type FilterName = (typeof FILTERS)[number];

export interface FilterOptions {
  minChars: number;
  maxChars: number;
  /** The language queries must be in; undefined accepts any. */
  language: Language | undefined;
  /** Jaccard similarity of character trigrams at or above which a query is a near duplicate; undefined: off. */
  nearDuplicateThreshold: number | undefined;
  /** Texts a query must not duplicate, exactly or nearly (an eval set against its training queries): 'trainingDuplicate'. */
  against?: readonly string[];
}

export interface FilterResult {
  kept: QueryRow[];
  removed: Record<FilterName, number>;
  /** A few removed texts per filter, for the manifest: what the filter actually caught. */
  examples: Partial<Record<FilterName, string[]>>;
}

const EXAMPLES_PER_FILTER = 5;

export function emptyCounts(): Record<FilterName, number> {
  return Object.fromEntries(FILTERS.map((f) => [f, 0])) as Record<FilterName, number>;
}

export function noteRemoved(r: FilterResult, filter: FilterName, text: string): void {
  r.removed[filter]++;
  const list = (r.examples[filter] ??= []);
  if (list.length < EXAMPLES_PER_FILTER) list.push(text);
}

/** Every filter but the round trip (which needs a model: see roundTrip.ts). */
export function applyTextFilters(rows: readonly QueryRow[], opts: FilterOptions): FilterResult {
  const result: FilterResult = { kept: [], removed: emptyCounts(), examples: {} };
  const against = new Set((opts.against ?? []).map(normalizeQuery));
  const seen = new Set<string>();
  const near = opts.nearDuplicateThreshold === undefined ? undefined : new NearDuplicateIndex(opts.nearDuplicateThreshold);
  const AGAINST = '\0against';
  if (near) (opts.against ?? []).forEach((t) => near.add(AGAINST, t));
  for (const row of rows) {
    const norm = normalizeQuery(row.text);
    const length = [...row.text.trim()].length;
    if (against.has(norm)) noteRemoved(result, 'trainingDuplicate', row.text);
    else if (seen.has(norm)) noteRemoved(result, 'exactDuplicate', row.text);
    else if (length < opts.minChars) noteRemoved(result, 'tooShort', row.text);
    else if (length > opts.maxChars) noteRemoved(result, 'tooLong', row.text);
    else if (opts.language && detectLanguage(row.text) !== opts.language) noteRemoved(result, 'wrongLanguage', row.text);
    else {
      const dup = near?.addUnlessDuplicate(row.query_id, row.text);
      if (!dup) result.kept.push(row);
      else noteRemoved(result, dup.id === AGAINST ? 'trainingDuplicate' : 'nearDuplicate', row.text);
    }
    seen.add(norm);
  }
  return result;
}
