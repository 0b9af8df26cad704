"""Can a linear map on a frozen base's embeddings beat the base on human questions? (an experiment)

Why it is kept: it is the cheap test behind a recipe decision. With every embedding computed once, an
adapter trains in seconds on a CPU, so many settings can be tried where a fine-tune of the whole model
takes half an hour per try. If no adapter trained on the synthetic questions beats the base on held-out
human questions, nor one trained on human questions of other articles, then the frozen base's geometry is
already as good as these signals can make it, and full fine-tuning on the same signal is not expected to
do better either (BENCHMARKS.md, "Can fine-tuning beat multilingual-e5-small on Japanese Wikipedia?").

    .venv/bin/python trainer/experiments/linear_adapter_probe.py --model MODEL_DIR/st \\
        --chunks RUN/chunks.parquet --questions RUN/questions.parquet --synthetic RUN/queries.parquet

The corpus's documents are split into two halves (alternate paths, sorted); each half is a separate
corpus with its own chunks, synthetic queries and human questions, so the procedure is checked twice on
data it was not tuned to. Intervals are paired bootstraps over questions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

SETTINGS = [  # (symmetric, steps, learning rate, pull towards the identity)
    (False, 300, 1e-3, 0.01),
    (True, 300, 1e-3, 0.01),
    (False, 300, 1e-3, 0.1),
    (True, 300, 1e-3, 0.1),
    (True, 1000, 1e-3, 0.001),
]


def encode(model, texts: list[str], prompt: str, cache: Path | None) -> np.ndarray:
    if cache and cache.exists():
        return np.load(cache)
    e = model.encode([prompt + t for t in texts], batch_size=32, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    if cache:
        np.save(cache, e)
    return e


def hits(q: np.ndarray, d: np.ndarray, gold: list[set[int]]) -> tuple[np.ndarray, np.ndarray]:
    top = np.argsort(-(q @ d.T), axis=1)[:, :10]
    return np.array([top[i, 0] in g for i, g in enumerate(gold)]), np.array([bool(set(top[i]) & g) for i, g in enumerate(gold)])


def paired(a: np.ndarray, b: np.ndarray, rng) -> tuple[float, float]:
    idx = rng.integers(0, len(a), (1000, len(a)))
    return tuple(np.percentile(b[idx].mean(1) - a[idx].mean(1), [2.5, 97.5]))


def train_adapter(q: np.ndarray, pos: np.ndarray, docs: np.ndarray, symmetric: bool, steps: int, lr: float, reg: float, seed: int = 0) -> np.ndarray:
    """MNRL against every chunk of the corpus (a full softmax is cheap on cached embeddings)."""
    torch.manual_seed(seed)
    dim = docs.shape[1]
    w = torch.eye(dim, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    Q, P, D = torch.tensor(q), torch.tensor(pos), torch.tensor(docs)
    for _ in range(steps):
        b = torch.randint(0, len(Q), (256,))
        qq = torch.nn.functional.normalize(Q[b] @ w, dim=1)
        dd = torch.nn.functional.normalize(D @ w, dim=1) if symmetric else D
        loss = torch.nn.functional.cross_entropy(qq @ dd.T / 0.05, P[b]) + reg * ((w - torch.eye(dim)) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach().numpy()


def unit(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    y = x @ w
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--chunks", required=True)
    ap.add_argument("--questions", required=True, help="importQuestions' questions.parquet (relevant_chunk_ids)")
    ap.add_argument("--synthetic", required=True, help="a queries.parquet (chunk_id, text)")
    ap.add_argument("--cache", default=None, help="a folder for the embeddings, reused when present")
    a = ap.parse_args(argv)
    from sentence_transformers import SentenceTransformer

    C = pq.read_table(a.chunks).to_pandas()
    H = pq.read_table(a.questions).to_pandas()
    S = pq.read_table(a.synthetic).to_pandas()
    cache = Path(a.cache) if a.cache else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    model = SentenceTransformer(a.model, device="cpu")
    ce = encode(model, C.text.tolist(), "passage: ", cache and cache / "chunks.npy")
    he = encode(model, H.text.tolist(), "query: ", cache and cache / "human.npy")
    se = encode(model, S.text.tolist(), "query: ", cache and cache / "synthetic.npy")
    cid = {c: i for i, c in enumerate(C.chunk_id)}
    half = {p: i % 2 for i, p in enumerate(sorted(C.path.unique()))}
    rng = np.random.default_rng(0)
    gold_all = [{cid[c] for c in r} for r in H.relevant_chunk_ids]

    print("1. adapters trained on each half's synthetic queries, judged on that half's human questions")
    for h in (0, 1):
        keep = np.array([half[p] == h for p in C.path])
        index = np.where(keep)[0]
        remap = {j: i for i, j in enumerate(index)}
        docs = ce[keep]
        hm = np.array([half[p] == h for p in H.path])
        gold = [{remap[i] for i in g} for g, m in zip(gold_all, hm) if m]
        sm = np.array([cid[c] in remap for c in S.chunk_id])
        spos = np.array([remap[cid[c]] for c in S.chunk_id[sm]])
        b1, b10 = hits(he[hm], docs, gold)
        print(f"half {h}: {len(docs)} chunks, {hm.sum()} human, {sm.sum()} synthetic; base accuracy@1 {b1.mean():.3f} accuracy@10 {b10.mean():.3f}")
        for sym, steps, lr, reg in SETTINGS:
            w = train_adapter(se[sm], spos, docs, sym, steps, lr, reg)
            a1, a10 = hits(unit(he[hm], w), unit(docs, w) if sym else docs, gold)
            lo, hi = paired(b1, a1, rng)
            print(f"  symmetric={sym} steps={steps} reg={reg}: accuracy@1 {a1.mean():.3f} ({a1.mean() - b1.mean():+.3f}, 95% CI {lo:+.3f} … {hi:+.3f}) accuracy@10 {a10.mean():.3f}", flush=True)

    print("2. adapters trained on the human questions of one half, judged on the other half's (all chunks)")
    hh = np.array([half[p] for p in H.path])
    for tr in (0, 1):
        trm, tem = hh == tr, hh != tr
        pos = np.array([min(g) for g, m in zip(gold_all, trm) if m])
        gold = [g for g, m in zip(gold_all, tem) if m]
        b1, _ = hits(he[tem], ce, gold)
        print(f"train on half {tr} ({trm.sum()}), judge on half {1 - tr} ({tem.sum()}): base accuracy@1 {b1.mean():.3f}")
        for sym, steps, lr, reg in SETTINGS[:4]:
            w = train_adapter(he[trm], pos, ce, sym, steps, lr, reg)
            a1, _ = hits(unit(he[tem], w), unit(ce, w) if sym else ce, gold)
            lo, hi = paired(b1, a1, rng)
            print(f"  symmetric={sym} reg={reg}: accuracy@1 {a1.mean():.3f} ({a1.mean() - b1.mean():+.3f}, 95% CI {lo:+.3f} … {hi:+.3f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
