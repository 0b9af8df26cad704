import { Field, Float64, Int32, List, type Table, Utf8, vectorFromArray } from 'apache-arrow';
import { InvalidInputError } from '../../core/errors.ts';

/**
 * Typed access to the columns of artifact tables, and plain (non-dictionary) column builders, so
 * every Parquet file the evaluation writes has the Utf8/Int32/Float64/List<Utf8> types its
 * contract names. A missing column is the producer's bug or an old artifact: say which file.
 */

function child(table: Table, name: string, where: string) {
  const col = table.getChild(name);
  if (!col) {
    throw new InvalidInputError(`column "${name}" is missing`, {
      where,
      hint: `the file has: ${table.schema.fields.map((f) => f.name).join(', ')}; rebuild it with the current stage`,
    });
  }
  return col;
}

export function stringColumn(table: Table, name: string, where: string): string[] {
  return [...child(table, name, where)].map((v) => (v === null || v === undefined ? '' : String(v)));
}


export function numberColumn(table: Table, name: string, where: string): number[] {
  return [...child(table, name, where)].map((v) => Number(v));
}

export function nullableNumberColumn(table: Table, name: string, where: string): Array<number | null> {
  return [...child(table, name, where)].map((v) => (v === null || v === undefined ? null : Number(v)));
}

export function stringListColumn(table: Table, name: string, where: string): string[][] {
  return [...child(table, name, where)].map((v) => (v ? [...(v as Iterable<unknown>)].map(String) : []));
}

export function numberListColumn(table: Table, name: string, where: string): number[][] {
  return [...child(table, name, where)].map((v) => (v ? [...(v as Iterable<unknown>)].map(Number) : []));
}

export const utf8 = (values: ReadonlyArray<string | null>) => vectorFromArray([...values], new Utf8());
export const int32 = (values: ReadonlyArray<number | null>) => vectorFromArray([...values], new Int32());
export const float64 = (values: ReadonlyArray<number | null>) => vectorFromArray([...values], new Float64());
export const utf8List = (values: ReadonlyArray<readonly string[]>) =>
  vectorFromArray(
    values.map((v) => [...v]),
    new List(new Field('item', new Utf8(), true)),
  );
