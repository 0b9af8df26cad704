"""Reference embeddings with sentence-transformers on PyTorch (CPU), for the parity test and the benchmark.

    python trainer/st_encode.py --model ST_DIR --texts texts.json --out vectors.f32 [--kind query|passage]

texts.json is a JSON array of strings. vectors.f32 receives the embeddings as raw little-endian float32,
row-major (len(texts) x dim). The last stdout line is JSON: {"count", "dim", "seconds", "cpuSeconds", "threads"}, where the times
cover encode() only (model loading excluded), for a sentences/s comparison; cpuSeconds (all threads)
is the fairer measure on a machine shared with other work.
The prefix for --kind comes from the model's own prompts ("query", "document"), as the TypeScript encoder
takes it from model.json, unless --prefix is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--kind", choices=["query", "passage"], default="passage")
    p.add_argument("--prefix", default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, every core)")
    a = p.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    if a.threads:
        torch.set_num_threads(a.threads)
    model = SentenceTransformer(a.model, device="cpu")
    with open(a.texts, encoding="utf-8") as f:
        texts = json.load(f)
    if a.prefix is not None:
        prompt = a.prefix
    else:
        prompts = model.prompts or {}
        prompt = prompts.get("query", "") if a.kind == "query" else prompts.get("document") or prompts.get("passage") or ""
    started, cpu_started = time.perf_counter(), time.process_time()
    vectors = model.encode(texts, batch_size=a.batch_size, prompt=prompt or None, convert_to_numpy=True)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    np.ascontiguousarray(vectors, dtype="<f4").tofile(a.out)
    print(json.dumps({"count": len(texts), "dim": int(vectors.shape[1]), "seconds": seconds, "cpuSeconds": cpu_seconds, "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
