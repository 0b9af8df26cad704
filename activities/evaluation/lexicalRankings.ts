import { type Bm25Index, fuseStandardized } from '../lexical/bm25.ts';
import { type Corpus, type EvalSet, allIndices } from './evalSets.ts';
import { RANKING_DEPTH } from './metrics.ts';
import type { EvalSetName } from './metricsJson.ts';
import { topK } from './search.ts';
import { type SystemScores, scoreRankings } from './summary.ts';

/**
 * The lexical systems: 'bm25' alone (no model at all: what a search engine gives out of the box), and
 * each model fused with it ('base+bm25', 'finetuned+bm25'). A fine-tuned model is worth handing over
 * only if it beats what a user gets without one; on Japanese Wikipedia questions BM25 beat
 * multilingual-e5-small by 16 points of accuracy@1, and the hybrid beat both.
 */

/** The chunk ids of the top RANKING_DEPTH rows by `scores`. */
function rankedIds(scores: Float32Array, corpus: Corpus): string[] {
  return Array.from(topK(scores, Math.min(RANKING_DEPTH, scores.length)).indices, (j) => corpus.ids[j]!);
}

/** 'bm25' on each eval set. */
export function rankLexically(index: Bm25Index, corpus: Corpus, sets: EvalSet[]): Map<EvalSetName, SystemScores> {
  const scratch = new Float32Array(index.size);
  return new Map(
    sets.map((set) => {
      const rankings = set.texts.map((text) => rankedIds(index.scores(text, scratch), corpus));
      return [set.name, scoreRankings('bm25', rankings, set.relevant, allIndices(set), null)];
    }),
  );
}

/**
 * A ranking of the corpus by a model's cosines fused with BM25's, one query at a time: the model's
 * scores are those it has already computed for its own ranking (buffers reused across queries).
 */
export function hybridRanker(index: Bm25Index, corpus: Corpus): (question: string, cosines: Float32Array) => string[] {
  const lexical = new Float32Array(index.size);
  const fused = new Float32Array(index.size);
  return (question, cosines) => rankedIds(fuseStandardized(cosines, index.scores(question, lexical), fused), corpus);
}
