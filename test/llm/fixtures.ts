import { testCacheDir } from '../support/cli.ts';
import { join } from 'node:path';
import { sha256 } from '../../artifacts/hash.ts';
import type { ArtifactStore } from '../../artifacts/store.ts';
import { CHUNKS_FILE, writeChunks } from '../../activities/artifactKinds/chunksArtifact.ts';
import { type ChunkRow, chunkId } from '../../activities/chunking/splitter.ts';
import { QUERIES_FILE, type QueryRow, writeQueries } from '../../activities/artifactKinds/queriesArtifact.ts';
import { PROJECT_ROOT } from '../../workers/config.ts';

/** The machine facts the LLM code needs; the same home as runStage, so the GGUF is assembled once. */
export const llmEnv = {
  python: join(PROJECT_ROOT, '.venv', 'bin', 'python'),
  home: join(testCacheDir(), 'embedflow-test-home'),
};

export interface Doc {
  path: string;
  /** One chunk per paragraph. */
  paragraphs: string[];
}

export function chunkRows(docs: Doc[]): ChunkRow[] {
  return docs.flatMap((doc) => {
    const text = doc.paragraphs.join('\n\n');
    const hash = sha256(text);
    let start = 0;
    return doc.paragraphs.map((p, ordinal) => {
      const row: ChunkRow = {
        chunk_id: chunkId(hash, start, start + p.length, p),
        doc_id: sha256(doc.path).slice(0, 16),
        path: doc.path,
        ordinal,
        text: p,
        start,
        end: start + p.length,
        heading: '',
        page: null,
        tokens: p.length,
      };
      start += p.length + 2;
      return row;
    });
  });
}

/** A published `chunks` artifact holding these documents' paragraphs as chunks. */
export async function chunksArtifact(store: ArtifactStore, docs: Doc[]): Promise<{ digest: string; rows: ChunkRow[] }> {
  const rows = chunkRows(docs);
  const w = await store.newWriter();
  await writeChunks(await w.file(CHUNKS_FILE), rows);
  const m = await store.publish(w, { kind: 'chunks', rows: { [CHUNKS_FILE]: rows.length } });
  return { digest: m.digest, rows };
}

export function queryRow(chunk_id: string, text: string, i = 0): QueryRow {
  return {
    query_id: sha256(`${chunk_id}\n${text}\n${i}`).slice(0, 16),
    chunk_id,
    text,
    style: 'question',
    provider: 'test',
    model: 'test',
    prompt_hash: 'test',
    latency_ms: 0,
    tokens: 0,
  };
}

export async function queriesArtifact(store: ArtifactStore, rows: QueryRow[], kind = 'queries'): Promise<string> {
  const w = await store.newWriter();
  await writeQueries(await w.file(QUERIES_FILE), rows);
  return (await store.publish(w, { kind, rows: { [QUERIES_FILE]: rows.length } })).digest;
}

/** Short Japanese and English passages of our own, one topic each. */
export const JA_DOCS: Doc[] = [
  {
    path: 'river.md',
    paragraphs: [
      '緑川は山あいの村を流れる全長42キロメートルの川である。上流には1968年に完成した緑川ダムがあり、下流の町に農業用水を送っている。',
      '緑川の河口付近には干潟が広がり、毎年秋になるとシギやチドリなどの渡り鳥が数千羽飛来する。干潟は2005年に県の保護区に指定された。',
    ],
  },
  {
    path: 'tea.md',
    paragraphs: [
      '村の茶畑は南向きの斜面に作られており、霧が多い気候が茶葉の香りを良くしている。一番茶の摘み取りは例年5月上旬に始まる。',
      '摘み取った茶葉はその日のうちに村の共同工場で蒸され、揉まれ、乾燥される。工場は1952年に農家12戸が出資して建てられた。',
    ],
  },
];

export const EN_DOCS: Doc[] = [
  {
    path: 'lighthouse.md',
    paragraphs: [
      'The Harrow Point lighthouse was built in 1872 to guard ships from the reef north of the bay. Its lamp was converted to electricity in 1931.',
      'Since 1990 the lighthouse has been run automatically, and the keeper\'s cottage now houses a small museum about the shipwrecks on the reef.',
    ],
  },
];
