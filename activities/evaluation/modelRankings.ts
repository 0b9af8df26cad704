import type { ArtifactReader, ArtifactStore } from '../../artifacts/store.ts';
import type { ModelVariant } from '../artifactKinds/modelArtifact.ts';
import { Encoder } from '../embedding/encoder.ts';
import { embedWithMemo, openEmbeddingMemo } from '../embedding/memoEmbed.ts';
import { seededSample } from './bootstrap.ts';
import { type Corpus, type EvalSet, allIndices } from './evalSets.ts';
import type { Bm25Index } from '../lexical/bm25.ts';
import { type LatencySummary, summarizeLatency } from './latency.ts';
import { hybridRanker } from './lexicalRankings.ts';
import { RANKING_DEPTH } from './metrics.ts';
import type { EvalSetName } from './metricsJson.ts';
import { ExactIndex, topK } from './search.ts';
import { type SystemScores, scoreRankings } from './summary.ts';

/** Untimed runs before measuring, so one-time costs (graph warm-up, JIT) stay out of the percentiles. */
const WARMUP_QUERIES = 3;

export interface ModelRankingJob {
  /** The system's name in the metrics: 'base' or 'finetuned'. */
  role: 'base' | 'finetuned';
  model: ArtifactReader;
  variant: ModelVariant;
  corpus: Corpus;
  sets: EvalSet[];
  /** Holds the shared embedding memo. */
  store: ArtifactStore;
  batchSize: number;
  /** Queries timed one at a time, a seeded sample over all eval sets. */
  latencyQueries: number;
  seed: number;
  signal: AbortSignal;
  /** Progress: n more texts embedded. */
  tick: (n: number, message: string) => void;
  /** Also rank with this model's scores fused with BM25's ('<role>+bm25'). */
  lexical?: Bm25Index;
}

export interface ModelRankings {
  model: { name: string; digest: string; variant: ModelVariant };
  /** The model's scores on each eval set. */
  scores: Map<EvalSetName, SystemScores>;
  /** The model fused with BM25 ('<role>+bm25') on each eval set, when `lexical` was given. */
  hybridScores: Map<EvalSetName, SystemScores>;
  /** Corpus row indices of each query's top 100, per eval set: the rerankers' candidates. */
  candidates: Map<EvalSetName, Int32Array[]>;
  /** Embed + search of one query at a time, over the timed sample. */
  latency: LatencySummary;
  corpusMemoHits: number;
  /** Texts the model embedded for ranking (the latency sample's repeats not counted). */
  embeddingsComputed: number;
}

/**
 * One model's rankings: it embeds the whole corpus and every query in batches, and exact cosine
 * search ranks each query's top 100. A sample of queries is also run one at a time, as a search
 * service would, for the latency percentiles.
 */
export async function rankWithModel(job: ModelRankingJob): Promise<ModelRankings> {
  const { role, corpus, sets } = job;
  const enc = await Encoder.load(job.model.dir, { variant: job.variant });
  try {
    // Through the shared embedding memo: chunks the mining stage (or an earlier evaluation)
    // embedded with this model, and queries an earlier evaluation embedded, are not embedded again.
    const memo = await openEmbeddingMemo(job.store, job.model.digest, job.variant);
    const embed = async (texts: readonly string[], kind: 'passage' | 'query', message: string) => {
      let last = 0;
      const r = await embedWithMemo(enc, memo, texts, {
        kind,
        batchSize: job.batchSize,
        // Progress (the heartbeat) comes once per flush: keep it frequent on a slow CPU.
        flushEvery: 128,
        signal: job.signal,
        onProgress: (n) => {
          job.tick(n - last, message);
          last = n;
        },
      });
      // Repeated texts are embedded once but count once each.
      job.tick(texts.length - last, message);
      return r;
    };
    const queryVectors: Float32Array[] = [];
    const corpusEmbedded = await embed(corpus.texts, 'passage', `${role}: embedding the corpus`)
      .then(async (r) => {
        for (const set of sets) queryVectors.push((await embed(set.texts, 'query', `${role}: ${set.name} queries`)).embeddings.data);
        return r;
      })
      .finally(() => memo.close());
    const { dim } = corpusEmbedded.embeddings;
    const index = new ExactIndex(corpusEmbedded.embeddings.data, dim);
    const embeddingsComputed = enc.modelCalls;

    // Latency as a search service sees it: one query embedded and searched at a time.
    const search = async (text: string) => index.search((await enc.encode([text], { kind: 'query' })).data, RANKING_DEPTH).indices;
    for (const text of sets[0]!.texts.slice(0, WARMUP_QUERIES)) await search(text);
    const timed = sets.map((set) => new Float64Array(set.texts.length).fill(Number.NaN));
    const flat = sets.flatMap((set, si) => set.texts.map((_, i) => [si, i] as const));
    for (const j of seededSample(flat.length, job.latencyQueries, job.seed)) {
      job.signal.throwIfAborted();
      const [si, i] = flat[j]!;
      const t0 = performance.now();
      await search(sets[si]!.texts[i]!);
      timed[si]![i] = performance.now() - t0;
    }
    const allLatencies: number[] = timed.flatMap((ms) => Array.from(ms).filter((x) => !Number.isNaN(x)));

    const scores = new Map<EvalSetName, SystemScores>();
    const hybridScores = new Map<EvalSetName, SystemScores>();
    const candidates = new Map<EvalSetName, Int32Array[]>();
    const hybrid = job.lexical && hybridRanker(job.lexical, corpus);
    sets.forEach((set, si) => {
      const vectors = queryVectors[si]!;
      const hybridRankings: string[][] = [];
      // Each query's cosines over the corpus once: its top 100, and (with BM25) the hybrid's ranking.
      const top = set.texts.map((text, i) => {
        const cosines = index.scores(vectors.subarray(i * dim, (i + 1) * dim));
        if (hybrid) hybridRankings.push(hybrid(text, cosines));
        return topK(cosines, Math.min(RANKING_DEPTH, index.size)).indices;
      });
      candidates.set(set.name, top);
      const rankings = top.map((t) => Array.from(t, (j) => corpus.ids[j]!));
      scores.set(set.name, scoreRankings(role, rankings, set.relevant, allIndices(set), timed[si]!));
      if (hybrid) hybridScores.set(set.name, scoreRankings(`${role}+bm25`, hybridRankings, set.relevant, allIndices(set), null));
    });
    return {
      model: { name: enc.info.name, digest: job.model.digest, variant: job.variant },
      scores,
      hybridScores,
      candidates,
      latency: summarizeLatency(allLatencies),
      corpusMemoHits: corpusEmbedded.memoHits,
      embeddingsComputed,
    };
  } finally {
    await enc.release();
  }
}
