"""Retrieval on the dev split while training: each dev anchor against every dev passage.

The corpus is the dev positives and their mined negatives (keyed by chunk_id / negative_ids when the
dataset has them); a query's relevant passage is its own positive. Its figures (NDCG@10, MRR@10,
accuracy@k = hit rate, recall@k; the names the evaluation stage uses too) are a cheap trend line, not the final evaluation (that is the evaluation stage's job).
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

from pairs import read_table, text_columns


def _text_id(text: str) -> str:
    return "t" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _column(table: pa.Table, name: str) -> list | None:
    return table.column(name).to_pylist() if name in table.column_names else None


def build_dev_evaluator(path: str, query_prefix: str, passage_prefix: str, batch_size: int) -> InformationRetrievalEvaluator | None:
    table = read_table(path, "--dev")
    if table.num_rows == 0:
        return None
    cols = text_columns(table, path, None)
    anchors, positives = _column(table, "anchor"), _column(table, "positive")
    query_ids, chunk_ids, negative_ids = _column(table, "query_id"), _column(table, "chunk_id"), _column(table, "negative_ids")
    negatives = [_column(table, c) for c in cols[2:]]

    queries: dict[str, str] = {}
    corpus: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    for i, (anchor, positive) in enumerate(zip(anchors, positives)):
        if not anchor or not positive:
            continue
        qid = str(query_ids[i]) if query_ids else f"q{i}"
        cid = str(chunk_ids[i]) if chunk_ids else _text_id(positive)
        queries[qid] = anchor
        corpus[cid] = positive
        relevant.setdefault(qid, set()).add(cid)
        ids = (negative_ids[i] or []) if negative_ids else []
        for j, neg_col in enumerate(negatives):
            text = neg_col[i]
            if text:
                corpus.setdefault(str(ids[j]) if j < len(ids) else _text_id(text), text)
    if not queries:
        return None
    return InformationRetrievalEvaluator(
        queries=queries,
        corpus=corpus,
        relevant_docs=relevant,
        name="dev",
        batch_size=batch_size,
        query_prompt=query_prefix or None,
        corpus_prompt=passage_prefix or None,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1, 10],
        precision_recall_at_k=[1, 10],
        map_at_k=[100],
        write_csv=False,
    )
