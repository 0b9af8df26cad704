import { Bm25Index, fuseStandardized } from '../lexical/bm25.ts';
import { type Corpus, type EvalSet, allIndices } from './evalSets.ts';
import { RANKING_DEPTH } from './metrics.ts';
import type { EvalSetName } from './metricsJson.ts';
import { topK } from './search.ts';
import { type SystemScores, scoreRankings } from './summary.ts';

/**
 * The lexical systems: 'bm25' alone (no model at all: what a search engine gives out of the box), and
 * each model fused with it ('base+bm25', 'finetuned+bm25'). A fine-tuned model is worth handing over
 * only if it beats what a user gets without one; on Japanese Wikipedia questions BM25 beat
 * multilingual-e5-small by 15 points of accuracy@1, and the hybrid beat both.
 */

export const LEXICAL = 'bm25';

export function lexicalIndex(corpus: Corpus): Bm25Index {
  return new Bm25Index(corpus.texts);
}

/** 'bm25' on each eval set. */
export function rankLexically(index: Bm25Index, corpus: Corpus, sets: EvalSet[]): Map<EvalSetName, SystemScores> {
  const scratch = new Float32Array(index.size);
  return new Map(
    sets.map((set) => {
      const rankings = set.texts.map((text) => Array.from(topK(index.scores(text, scratch), Math.min(RANKING_DEPTH, index.size)).indices, (j) => corpus.ids[j]!));
      return [set.name, scoreRankings(LEXICAL, rankings, set.relevant, allIndices(set), null)];
    }),
  );
}

/** A model's cosine scores over the corpus fused with BM25's, ranked: '<model>+bm25' on one eval set. */
export function rankHybrid(
  system: string,
  index: Bm25Index,
  corpus: Corpus,
  set: EvalSet,
  denseScores: (i: number) => Float32Array,
): SystemScores {
  const lexical = new Float32Array(index.size);
  const fused = new Float32Array(index.size);
  const rankings = set.texts.map((text, i) => {
    fuseStandardized(denseScores(i), index.scores(text, lexical), fused);
    return Array.from(topK(fused, Math.min(RANKING_DEPTH, index.size)).indices, (j) => corpus.ids[j]!);
  });
  return scoreRankings(`${system}+${LEXICAL}`, rankings, set.relevant, allIndices(set), null);
}
