import { openAsBlob } from 'node:fs';
import { type FileHandle, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type Schema, Table, tableFromIPC, tableToIPC } from 'apache-arrow';
import * as pq from 'parquet-wasm/node';
import { asDiskFull, fsyncPath, randomId, writeFileAtomic } from './fsutil.ts';

/**
 * Arrow ⇄ Parquet for every artifact. parquet-wasm (arrow-rs compiled to WebAssembly) writes any Arrow
 * type, FixedSizeList<float32> included, with zstd; pyarrow, pandas and DuckDB read the files as-is.
 * (Writer choice and its measurements: bench/parquet-writers.ts.)
 */
export type ParquetCompression = 'zstd' | 'snappy' | 'none';

export interface WriteOptions {
  compression?: ParquetCompression;
  /** Rows per row group; smaller groups let readers skip more. */
  rowGroupSize?: number;
}

export function parquetBytes(table: Table, opts: WriteOptions = {}): Uint8Array {
  const wasmTable = pq.Table.fromIPCStream(tableToIPC(table, 'stream'));
  return pq.writeParquet(wasmTable, writerProperties(opts));
}

/** Write a table as a Parquet file (atomically: readers never see a partial file). */
export async function writeParquet(path: string, table: Table, opts: WriteOptions = {}): Promise<void> {
  await writeFileAtomic(path, parquetBytes(table, opts));
}

export function tableFromParquetBytes(bytes: Uint8Array, columns?: string[]): Table {
  const wasmTable = pq.readParquet(bytes, columns ? { columns } : undefined);
  return tableFromIPC(wasmTable.intoIPCStream());
}

export async function readParquet(path: string, columns?: string[]): Promise<Table> {
  return tableFromParquetBytes(await readFile(path), columns);
}

/**
 * Writes a Parquet file batch by batch, so a stage never holds its whole output in memory: each
 * `write` hands Arrow record batches to parquet-wasm's streaming writer, which emits a row group
 * whenever `rowGroupSize` rows have accumulated (so memory is bounded by one row group, compressed).
 * The file appears at `path` only on `close()` (temp file, fsync, rename); `abort()` leaves nothing.
 */
export class ParquetStreamWriter {
  private readonly sink: WritableStreamDefaultWriter<pq.RecordBatch>;
  private readonly done: Promise<void>;
  private failure: unknown;
  private rows = 0;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly tmp: string,
    private readonly schema: Schema,
    private readonly opts: WriteOptions,
    fh: FileHandle,
  ) {
    const pipe = new TransformStream<pq.RecordBatch, pq.RecordBatch>(undefined, { highWaterMark: 1 });
    this.sink = pipe.writable.getWriter();
    this.done = (async () => {
      try {
        const bytes = (await pq.transformParquetStream(pipe.readable, writerProperties(opts))) as ReadableStream<Uint8Array>;
        for await (const part of bytes as unknown as AsyncIterable<Uint8Array>) await fh.write(part);
        await fh.sync();
      } finally {
        await fh.close();
      }
    })();
    // Remember the failure so the next write reports it (and no unhandled rejection escapes meanwhile).
    this.done.catch((err: unknown) => {
      this.failure ??= err;
    });
  }

  static async open(path: string, schema: Schema, opts: WriteOptions = {}): Promise<ParquetStreamWriter> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${randomId()}`;
    return new ParquetStreamWriter(path, tmp, schema, opts, await open(tmp, 'w'));
  }

  /** Rows written so far. */
  get rowCount(): number {
    return this.rows;
  }

  /** Append a table's rows; its schema must equal the one the writer was opened with. */
  async write(table: Table): Promise<void> {
    if (this.closed) throw new Error(`ParquetStreamWriter(${this.path}): write after close`);
    if (this.failure) throw this.failure;
    if (table.numRows === 0) return;
    if (!sameSchema(table.schema, this.schema)) {
      throw new TypeError(
        `ParquetStreamWriter(${this.path}): table schema ${schemaText(table.schema)} differs from ${schemaText(this.schema)}`,
      );
    }
    const wasmTable = pq.Table.fromIPCStream(tableToIPC(table, 'stream'));
    try {
      for (const batch of wasmTable.recordBatches()) {
        await this.sink.ready;
        await this.sink.write(batch);
      }
    } finally {
      wasmTable.free();
    }
    this.rows += table.numRows;
  }

  /** Finish the file and publish it at `path` atomically. */
  async close(): Promise<void> {
    if (this.closed) throw new Error(`ParquetStreamWriter(${this.path}): closed twice`);
    this.closed = true;
    if (this.rows === 0) {
      // The streaming writer needs at least one batch to learn the schema: write the empty file whole.
      await this.abort();
      await writeParquet(this.path, new Table(this.schema), this.opts);
      return;
    }
    try {
      await this.sink.close();
      await this.done;
      await rename(this.tmp, this.path);
      await fsyncPath(dirname(this.path));
    } catch (err) {
      await rm(this.tmp, { force: true });
      throw asDiskFull(err, this.path);
    }
  }

  /** Stop writing and remove the partial file. */
  async abort(): Promise<void> {
    this.closed = true;
    await this.sink.abort(new Error('aborted')).catch(() => undefined);
    await this.done.catch(() => undefined);
    await rm(this.tmp, { force: true });
  }
}

function writerProperties(opts: WriteOptions): pq.WriterProperties {
  const codec = { zstd: pq.Compression.ZSTD, snappy: pq.Compression.SNAPPY, none: pq.Compression.UNCOMPRESSED }[
    opts.compression ?? 'zstd'
  ];
  let builder = new pq.WriterPropertiesBuilder().setCompression(codec);
  if (opts.rowGroupSize) builder = builder.setMaxRowGroupSize(opts.rowGroupSize);
  return builder.build();
}

function sameSchema(a: Schema, b: Schema): boolean {
  return schemaText(a) === schemaText(b);
}

function schemaText(s: Schema): string {
  return `{${s.fields.map((f) => `${f.name}: ${String(f.type)}${f.nullable ? '?' : ''}`).join(', ')}}`;
}

/**
 * Read a Parquet file as a sequence of Arrow tables, without loading the file into memory (it is read
 * through a Blob, one row group's column chunks at a time). Batches default to the largest row group:
 * smaller ones make the reader fetch a row group's pages again for every batch (several times slower).
 */
export async function* readParquetBatches(
  path: string,
  opts: { columns?: string[]; batchSize?: number } = {},
): AsyncGenerator<Table> {
  const file = await pq.ParquetFile.fromFile(await openAsBlob(path));
  try {
    const largestGroup = Math.max(1, ...file.metadata().rowGroups().map((g) => g.numRows()));
    const stream = (await file.stream({
      batchSize: opts.batchSize ?? largestGroup,
      ...(opts.columns ? { columns: opts.columns } : {}),
    })) as ReadableStream<pq.RecordBatch>;
    for await (const batch of stream as unknown as AsyncIterable<pq.RecordBatch>) {
      yield tableFromIPC(batch.intoIPCStream());
    }
  } finally {
    file.free();
  }
}
