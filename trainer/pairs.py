"""The dataset artifact's Parquet files as the columns sentence-transformers trains on.

train.parquet / dev.parquet hold anchor, positive, negative_1..k plus ids (query_id, chunk_id,
negative_ids). The losses read every column they are given as a text, in order, so only the text
columns go in: (anchor, positive, negative_1, ..., negative_n).
"""

from __future__ import annotations

import re
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from failures import TrainerConfigError

_NEG_RE = re.compile(r"^negative_(\d+)$")


def read_table(path: str, flag: str) -> pa.Table:
    try:
        return pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a file that is not Parquet
        raise TrainerConfigError(f"cannot read {path} as Parquet: {err}", where=flag, hint="pass the dataset artifact's Parquet file") from err


def check_columns(path: str, flag: str, num_negatives: int | None) -> None:
    """Fail in a second, before torch loads, on a file without the columns training needs."""
    try:
        schema = pq.read_schema(path)
    except Exception as err:
        raise TrainerConfigError(f"cannot read {path} as Parquet: {err}", where=flag, hint="pass the dataset artifact's Parquet file") from err
    text_columns(schema, path, num_negatives)


def text_columns(table: pa.Table | pa.Schema, path: str, num_negatives: int | None) -> list[str]:
    names = table.names if isinstance(table, pa.Schema) else table.column_names
    for col in ("anchor", "positive"):
        if col not in names:
            raise TrainerConfigError(
                f"{path} has no `{col}` column (columns: {', '.join(names)})",
                where=path,
                hint="the dataset needs anchor, positive and optionally negative_1..k columns",
            )
    negatives = sorted((int(m.group(1)), n) for n in names if (m := _NEG_RE.match(n)))
    if num_negatives is not None:
        if num_negatives > len(negatives):
            raise TrainerConfigError(
                f"--num-negatives {num_negatives} but {path} has only {len(negatives)} negative_* columns",
                where="--num-negatives",
                hint=f"use at most {len(negatives)}, or rebuild the dataset with more negatives",
            )
        negatives = negatives[:num_negatives]
    return ["anchor", "positive", *(n for _, n in negatives)]


def load_pairs(path: str, flag: str, num_negatives: int | None) -> tuple[Dataset, int]:
    """The training columns as a Dataset, and how many rows were dropped for a missing text."""
    from datasets import Dataset

    table = read_table(path, flag)
    cols = text_columns(table, path, num_negatives)
    table = table.select(cols)
    for col in cols:
        if not pa.types.is_string(table.schema.field(col).type) and not pa.types.is_large_string(table.schema.field(col).type):
            raise TrainerConfigError(f"{path}: column `{col}` is {table.schema.field(col).type}, not string", where=path, hint="text columns must be strings")
    # A row whose mining found fewer than k negatives has nulls there; the losses need every text.
    keep = None
    for col in cols:
        ok = pc.and_(pc.is_valid(table[col]), pc.greater(pc.utf8_length(pc.fill_null(table[col], "")), 0))
        keep = ok if keep is None else pc.and_(keep, ok)
    before = table.num_rows
    if keep is not None:
        table = table.filter(keep)
    dropped = before - table.num_rows
    if dropped:
        print(f"[train] {path}: dropped {dropped} of {before} rows with an empty or missing text in {cols}", file=sys.stderr)
    if table.num_rows == 0:
        raise TrainerConfigError(f"{path} has no usable rows ({before} rows, all with a missing text)", where=path, hint="check the dataset stage's output")
    return Dataset(table), dropped
