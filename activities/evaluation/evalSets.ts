import { readParquet } from '../../artifacts/parquet.ts';
import type { ArtifactReader } from '../../artifacts/store.ts';
import { InvalidInputError } from '../../core/errors.ts';
import { CHUNKS_FILE } from '../artifactKinds/chunksArtifact.ts';
import { readEvalQuestions } from '../artifactKinds/evalQuestionsArtifact.ts';
import { QUERIES_FILE } from '../artifactKinds/queriesArtifact.ts';
import { seededSample } from './bootstrap.ts';
import type { EvalSetName } from './metricsJson.ts';
import { stringColumn } from './tables.ts';

/**
 * What the evaluation searches and asks: the chunk corpus, and each eval set's queries with the
 * chunks relevant to them. A query whose relevant chunks are not in the corpus cannot be answered
 * and is counted as skipped, not scored.
 */

export interface Corpus {
  ids: string[];
  texts: string[];
  documents: number;
}

export interface EvalSet {
  name: EvalSetName;
  queryIds: string[];
  texts: string[];
  relevant: Array<Set<string>>;
  skipped: number;
}

export interface EvalSetInputs {
  chunks: ArtifactReader;
  /** Generated eval queries: one relevant chunk each. */
  evalQueries: ArtifactReader | undefined;
  /** Human questions matched to chunks (importQuestions). */
  evalQuestions: ArtifactReader | undefined;
}

export interface QuerySample {
  /** Keep a seeded sample of this many queries per eval set; all when absent. */
  maxQueries?: number;
  seed: number;
}

/** The corpus and every wired eval set (generated first), each sampled; an eval set with no answerable query is an error. */
export async function readEvalSets(inputs: EvalSetInputs, opts: QuerySample, where: string): Promise<{ corpus: Corpus; sets: EvalSet[] }> {
  const corpus = await readCorpus(inputs.chunks);
  const chunkIds = new Set(corpus.ids);
  const sets: EvalSet[] = [];
  if (inputs.evalQueries) sets.push(sampleQueries(await readGenerated(inputs.evalQueries, chunkIds), opts));
  if (inputs.evalQuestions) sets.push(sampleQueries(await readHuman(inputs.evalQuestions, inputs.chunks, chunkIds), opts));
  for (const s of sets) {
    if (s.queryIds.length === 0) {
      throw new InvalidInputError(`the ${s.name} eval set has no query whose relevant chunk is in the corpus`, {
        where,
        hint: 'build the eval set from the same chunks artifact the evaluation reads',
      });
    }
  }
  return { corpus, sets };
}

/** Every query of the set, by position: the query index of a system scored on all of them. */
export function allIndices(set: EvalSet): Int32Array {
  return Int32Array.from(set.queryIds, (_, i) => i);
}

async function readCorpus(chunks: ArtifactReader): Promise<Corpus> {
  const where = chunks.file(CHUNKS_FILE);
  const t = await readParquet(where, ['chunk_id', 'doc_id', 'text']);
  const ids = stringColumn(t, 'chunk_id', where);
  if (ids.length === 0) throw new InvalidInputError('the chunks artifact is empty', { where });
  return { ids, texts: stringColumn(t, 'text', where), documents: new Set(stringColumn(t, 'doc_id', where)).size };
}

async function readGenerated(input: ArtifactReader, chunkIds: Set<string>): Promise<EvalSet> {
  const where = input.file(QUERIES_FILE);
  const t = await readParquet(where, ['query_id', 'chunk_id', 'text']);
  const qids = stringColumn(t, 'query_id', where);
  const cids = stringColumn(t, 'chunk_id', where);
  const texts = stringColumn(t, 'text', where);
  const set: EvalSet = { name: 'generated', queryIds: [], texts: [], relevant: [], skipped: 0 };
  qids.forEach((q, i) => {
    if (!chunkIds.has(cids[i]!)) {
      set.skipped++;
      return;
    }
    set.queryIds.push(q);
    set.texts.push(texts[i]!);
    set.relevant.push(new Set([cids[i]!]));
  });
  return set;
}

async function readHuman(input: ArtifactReader, chunks: ArtifactReader, chunkIds: Set<string>): Promise<EvalSet> {
  const resolvedAgainst = input.manifest.lineage.inputs['chunks'];
  if (resolvedAgainst && resolvedAgainst !== chunks.digest) {
    throw new InvalidInputError('the human questions were matched to the chunks of another chunks artifact', {
      where: `evalQuestions ${input.digest}`,
      hint: 'wire the importQuestions stage and the evaluate stage to the same chunks stage',
    });
  }
  const set: EvalSet = { name: 'human', queryIds: [], texts: [], relevant: [], skipped: 0 };
  for (const q of await readEvalQuestions(input)) {
    const rel = q.relevant.filter((c) => chunkIds.has(c));
    if (rel.length === 0) {
      set.skipped++;
      continue;
    }
    set.queryIds.push(q.query_id);
    set.texts.push(q.text);
    set.relevant.push(new Set(rel));
  }
  return set;
}

function sampleQueries(set: EvalSet, opts: QuerySample): EvalSet {
  if (!opts.maxQueries || set.queryIds.length <= opts.maxQueries) return set;
  const keep = seededSample(set.queryIds.length, opts.maxQueries, opts.seed);
  const pick = <T>(xs: T[]) => Array.from(keep, (i) => xs[i]!);
  return { ...set, queryIds: pick(set.queryIds), texts: pick(set.texts), relevant: pick(set.relevant) };
}
