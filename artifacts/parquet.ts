import { readFile } from 'node:fs/promises';
import { type Table, tableFromIPC, tableToIPC } from 'apache-arrow';
import * as pq from 'parquet-wasm/node';
import { writeFileAtomic } from './fsutil.ts';

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
  const codec = { zstd: pq.Compression.ZSTD, snappy: pq.Compression.SNAPPY, none: pq.Compression.UNCOMPRESSED }[
    opts.compression ?? 'zstd'
  ];
  let builder = new pq.WriterPropertiesBuilder().setCompression(codec);
  if (opts.rowGroupSize) builder = builder.setMaxRowGroupSize(opts.rowGroupSize);
  const wasmTable = pq.Table.fromIPCStream(tableToIPC(table, 'stream'));
  return pq.writeParquet(wasmTable, builder.build());
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
