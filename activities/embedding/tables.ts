import { Field, FixedSizeList, Float32, Table, makeData, makeVector } from 'apache-arrow';
import { readParquet, writeParquet } from '../../artifacts/parquet.ts';
import { InvalidInputError } from '../../core/errors.ts';
import { stringColumn, utf8 } from '../evaluation/tables.ts';
import type { Embeddings } from './encoder.ts';

/** `embeddings` artifact file: id (Utf8), vector (FixedSizeList<Float32>[dim]). */
export async function writeEmbeddings(path: string, ids: readonly string[], emb: Embeddings): Promise<void> {
  const listType = new FixedSizeList(emb.dim, new Field('item', new Float32(), false));
  const values = makeData({ type: new Float32(), length: emb.data.length, data: emb.data });
  const vectors = makeVector(makeData({ type: listType, length: emb.count, nullCount: 0, child: values }));
  const table = new Table({ id: utf8(ids), vector: vectors });
  await writeParquet(path, table);
}

export async function readEmbeddings(path: string): Promise<{ ids: string[]; embeddings: Embeddings }> {
  const table = await readParquet(path);
  const ids = stringColumn(table, 'id', path);
  const col = table.getChild('vector');
  const type = col?.type as FixedSizeList | undefined;
  if (!col || !(type instanceof FixedSizeList)) {
    throw new InvalidInputError('column "vector" (FixedSizeList<float32>) is missing', { where: path });
  }
  const dim = type.listSize;
  const data = new Float32Array(table.numRows * dim);
  let at = 0;
  for (const chunk of col.data) {
    const child = chunk.children[0];
    const values = child?.values as Float32Array;
    const start = chunk.offset * dim + (child?.offset ?? 0);
    data.set(values.subarray(start, start + chunk.length * dim), at);
    at += chunk.length * dim;
  }
  return { ids, embeddings: { dim, count: table.numRows, data } };
}
