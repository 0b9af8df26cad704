"""Run sentence-transformers' mine_hard_negatives on (query, positive) pairs, for the parity test of
embedflow's own mining (activities/embedding/mining.ts).

Input JSON: {"queries": [...], "positives": [...], "corpus": [...], "configs": [{mine_hard_negatives kwargs}, ...]}.
Prints JSON: the de-duplicated corpus and queries as mine_hard_negatives sees them, their embeddings
(so the caller mines on exactly the same vectors), and per config the negatives it chose per query,
best first.

The embeddings are computed once here and handed to mine_hard_negatives through its own cache folder
(the file names it looks for), so every config and the caller share them bit for bit.
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives


def cache_name(kind: str, model: SentenceTransformer, texts: list[str]) -> str:
    # As mine_hard_negatives names its cache files (no prompt given).
    model_name = model.model_card_data.base_model or ""
    digest = hashlib.sha256(repr((model_name, None, None, texts)).encode(), usedforsecurity=False).hexdigest()
    return f"{kind}_embeddings_{digest}.npy"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    args = ap.parse_args()
    with open(args.input, encoding="utf-8") as f:
        spec = json.load(f)
    queries, positives = spec["queries"], spec["positives"]
    # The orders mine_hard_negatives uses: corpus then positives, de-duplicated; queries de-duplicated.
    corpus = list(dict.fromkeys(spec["corpus"] + positives))
    unique_queries = list(dict.fromkeys(queries))

    model = SentenceTransformer(args.model, device="cpu")
    corpus_emb = model.encode_document(corpus, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    query_emb = model.encode_query(unique_queries, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    cache = tempfile.mkdtemp(prefix="ef-mine-parity-")
    np.save(os.path.join(cache, cache_name("corpus", model, corpus)), corpus_emb)
    np.save(os.path.join(cache, cache_name("query", model, unique_queries)), query_emb)

    dataset = Dataset.from_dict({"anchor": queries, "positive": positives})
    results = []
    for config in spec["configs"]:
        mined = mine_hard_negatives(
            dataset,
            model,
            corpus=spec["corpus"],
            output_format="labeled-list",
            cache_folder=cache,
            verbose=False,
            **config,
        )
        chosen: dict[str, list[str]] = {}
        for row in mined:
            # labeled-list: the positives (label 1) first, then the negatives best first.
            chosen[row["anchor"]] = [doc for doc, label in zip(row["positive"], row["labels"]) if label == 0]
        results.append(chosen)

    json.dump(
        {
            "corpus": corpus,
            "queries": unique_queries,
            "corpusEmbeddings": corpus_emb.astype(np.float32).tolist(),
            "queryEmbeddings": query_emb.astype(np.float32).tolist(),
            "negatives": results,
        },
        sys.stdout,
        ensure_ascii=False,
    )


if __name__ == "__main__":
    main()
