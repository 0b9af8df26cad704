"""Does fine-tuning only the top layers of a strong base beat it on held-out human questions? (an experiment)

Why it is kept: a full fine-tune of multilingual-e5-small runs ~0.2 samples/s on a 2-core CPU, half an hour
per try. Here every text goes once through the frozen lower layers (`--cut`), the hidden states are kept,
and only the layers above are trained and re-run, so one try costs minutes. Two questions, each on
articles it was not tuned to:

- the product path: trained on one half's rule-written questions (the recipe's `ict` cloze questions),
  judged on that half's human questions;
- the ceiling: trained on *human* questions of other articles (`--train-*`, e.g. jaquad-train), judged on
  both halves. If real questions do not move the base either, no synthetic question will.

Each is judged alone and fused with BM25 as the evaluation's '<model>+bm25' is (a fine-tune that does
not help alone might still help the hybrid).

    .venv/bin/python trainer/experiments/top_layers_probe.py --model MODEL_DIR \\
        --chunks DEV/chunks.parquet --questions DEV/questions.parquet --synthetic DEV/queries.parquet \\
        --train-chunks TRAIN/chunks.parquet --train-questions TRAIN/questions.parquet --cache /tmp/probe/cache

The corpus's documents are split into two halves (alternate paths, sorted), each a corpus of its own.
Intervals are paired bootstraps over questions (1,000 resamples).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import unicodedata
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from linear_adapter_probe import hits, paired  # the same hit and interval definitions as the adapter probe


class Encoder:
    """The base split at layer `cut`: `lower` once per text (cached), `upper` trained and re-run."""

    def __init__(self, model_dir: str, cut: int):
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.bert = AutoModel.from_pretrained(model_dir, attn_implementation="sdpa").eval()
        self.cut = cut
        for p in self.bert.parameters():
            p.requires_grad_(False)

    def upper_layers(self):
        return self.bert.encoder.layer[self.cut:]

    @torch.no_grad()
    def lower(self, texts: list[str], max_len: int, batch: int = 32) -> list[torch.Tensor]:
        out: list[torch.Tensor] = [None] * len(texts)  # type: ignore[list-item]
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            enc = self.tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            h = self.bert.embeddings(input_ids=enc["input_ids"], token_type_ids=torch.zeros_like(enc["input_ids"]))
            mask = additive_mask(enc["attention_mask"])
            for layer in self.bert.encoder.layer[:self.cut]:
                h = layer(h, attention_mask=mask)
                h = h[0] if isinstance(h, tuple) else h
            for j, i in enumerate(idx):
                n = int(enc["attention_mask"][j].sum())
                out[i] = h[j, :n].to(torch.float16).clone()
        return out

    def upper(self, states: list[torch.Tensor]) -> torch.Tensor:
        """Mean-pooled, normalised embeddings of cached states through the upper layers."""
        n = max(s.shape[0] for s in states)
        h = torch.zeros(len(states), n, states[0].shape[1])
        m = torch.zeros(len(states), n, dtype=torch.long)
        for j, s in enumerate(states):
            h[j, :s.shape[0]] = s.float()
            m[j, :s.shape[0]] = 1
        mask = additive_mask(m)
        for layer in self.upper_layers():
            h = layer(h, attention_mask=mask)
            h = h[0] if isinstance(h, tuple) else h
        mf = m.unsqueeze(-1).float()
        return F.normalize((h * mf).sum(1) / mf.sum(1), dim=-1)

    @torch.no_grad()
    def embed(self, states: list[torch.Tensor], batch: int = 64) -> np.ndarray:
        order = sorted(range(len(states)), key=lambda i: -states[i].shape[0])
        out = np.zeros((len(states), self.bert.config.hidden_size), np.float32)
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            out[idx] = self.upper([states[i] for i in idx]).numpy()
        return out


def additive_mask(m: torch.Tensor) -> torch.Tensor:
    return (1.0 - m[:, None, None, :].float()) * torch.finfo(torch.float32).min


LATIN = re.compile(r"([A-Za-z\u00C0-\u024F]+)|(\s+)|(.)", re.S)


def lexical_terms(text: str) -> list[str]:
    """The evaluation's BM25 terms (activities/lexical/bm25.ts): Latin words, else characters and bigrams."""
    terms, run = [], []
    def flush():
        for i, c in enumerate(run):
            terms.append(c)
            if i + 1 < len(run):
                terms.append(c + run[i + 1])
        run.clear()
    for m in LATIN.finditer(unicodedata.normalize("NFKC", text).lower()):
        if m.group(1):
            flush()
            terms.append(m.group(1))
        elif m.group(3):
            run.append(m.group(3))
    flush()
    return terms


def bm25_scores(docs: list[str], queries: list[str], k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    vocab: dict[str, int] = {}
    rows, cols, vals, lengths = [], [], [], []
    for d, text in enumerate(docs):
        tf = collections.Counter(lexical_terms(text))
        lengths.append(sum(tf.values()))
        for t, n in tf.items():
            rows.append(d); cols.append(vocab.setdefault(t, len(vocab))); vals.append(n)
    rows, cols, vals, lengths = map(np.array, (rows, cols, vals, lengths))
    df = np.bincount(cols, minlength=len(vocab))
    idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
    w = idf[cols] * vals * (k1 + 1) / (vals + k1 * (1 - b + b * lengths[rows] / lengths.mean()))
    W = np.zeros((len(docs), len(vocab)), np.float32)
    W[rows, cols] = w
    out = np.zeros((len(queries), len(docs)), np.float32)
    for i, q in enumerate(queries):
        ids = [vocab[t] for t in set(lexical_terms(q)) if t in vocab]
        if ids:
            out[i] = W[:, ids].sum(1)
    return out


def standardized(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-9)


def cached(path: Path, make):
    if path.exists():
        return torch.load(path)
    t0 = time.time()
    value = make()
    torch.save(value, path)
    print(f"  cached {path.name} in {time.time() - t0:.0f} s", flush=True)
    return value


def mine(q: np.ndarray, d: np.ndarray, pos: list[set[int]], allowed: np.ndarray, k: int, margin: float) -> list[list[int]]:
    """Hard negatives as the recipe mines them: the base's top chunks, minus positives and any within
    `margin` of the positive's score (likely false negatives)."""
    s = q @ d.T
    s[:, ~allowed] = -9
    out = []
    for i, p in enumerate(pos):
        best = max(s[i, j] for j in p)
        order = np.argsort(-s[i])[:50]
        out.append([int(j) for j in order if j not in p and s[i, j] < best * (1 - margin)][:k])
    return out


def train(enc: Encoder, q_states, d_states, pairs, negs, steps: int, lr: float, batch: int, seed: int, scale: float = 20.0, hardest: bool = False):
    """MNRL: in-batch positives and one hard negative per query, as the recipe's train stage does
    (`hardest`: always the base's top-scoring negative, as the train stage's `numNegatives: 1` takes
    `negative_1`; else one drawn from the mined three each step)."""
    torch.manual_seed(seed)
    base = {k: v.clone() for k, v in enc.upper_layers().state_dict().items()}
    params = [p for p in enc.upper_layers().parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    rng = np.random.default_rng(seed)
    enc.upper_layers().train()
    losses = []
    for step in range(steps):
        b = rng.choice(len(pairs), batch, replace=False)
        qi = [pairs[i][0] for i in b]
        pi = [pairs[i][1] for i in b]
        ni = [(negs[i][0] if hardest else negs[i][rng.integers(len(negs[i]))]) if negs[i] else int(rng.integers(len(d_states))) for i in b]
        qv = enc.upper([q_states[i] for i in qi])
        dv = enc.upper([d_states[i] for i in pi + ni])
        scores = qv @ dv.T * scale
        # a chunk that is another query's positive or negative may be this query's positive too
        for r, p in enumerate(pi):
            for c, j in enumerate(pi + ni):
                if c != r and j == p:
                    scores[r, c] = -1e4
        loss = F.cross_entropy(scores, torch.arange(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
        if step % 25 == 0 or step == steps - 1:
            print(f"    step {step + 1}/{steps} loss {np.mean(losses[-25:]):.3f}", flush=True)
    enc.upper_layers().eval()
    for p in params:
        p.requires_grad_(False)
    return base


def restore(enc: Encoder, state) -> None:
    enc.upper_layers().load_state_dict(state)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--chunks", required=True)
    ap.add_argument("--questions", required=True)
    ap.add_argument("--synthetic", required=True)
    ap.add_argument("--train-chunks")
    ap.add_argument("--train-questions")
    ap.add_argument("--train-docs", type=int, default=120, help="articles of the ceiling's training set")
    ap.add_argument("--cut", type=int, default=10)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--runs", default="ict:0:150:2e-5,human:-:150:2e-5", help="source:half:steps:lr[:scale[:hardest]],... (scale: MNRL's logit scale, 20 = sentence-transformers' default; hardest: always the top mined negative)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    enc = Encoder(a.model, a.cut)

    chunks = pq.read_table(a.chunks).to_pylist()
    human = pq.read_table(a.questions).to_pylist()
    synth = pq.read_table(a.synthetic).to_pylist()
    cid = {c["chunk_id"]: i for i, c in enumerate(chunks)}
    paths = sorted({c["path"] for c in chunks})
    half_of = {p: i % 2 for i, p in enumerate(paths)}
    chunk_half = np.array([half_of[c["path"]] for c in chunks])

    d_states = cached(cache / f"dev-chunks-{a.cut}.pt", lambda: enc.lower(["passage: " + c["text"] for c in chunks], 512))
    h_states = cached(cache / f"dev-human-{a.cut}.pt", lambda: enc.lower(["query: " + q["text"] for q in human], 128))
    s_states = cached(cache / f"dev-ict-{a.cut}.pt", lambda: enc.lower(["query: " + q["text"] for q in synth], 128))
    h_gold = [{cid[c] for c in q["relevant_chunk_ids"] if c in cid} for q in human]
    h_half = np.array([half_of[q["path"]] for q in human])
    s_pairs = [(i, cid[q["chunk_id"]]) for i, q in enumerate(synth) if q["chunk_id"] in cid]

    sources = {}
    if a.train_chunks:
        tchunks = pq.read_table(a.train_chunks).to_pylist()
        tq = pq.read_table(a.train_questions).to_pylist()
        tpaths = sorted({c["path"] for c in tchunks})[: a.train_docs]
        keep = set(tpaths)
        tchunks = [c for c in tchunks if c["path"] in keep]
        tq = [q for q in tq if q["path"] in keep]
        tcid = {c["chunk_id"]: i for i, c in enumerate(tchunks)}
        td = cached(cache / f"train{a.train_docs}-chunks-{a.cut}.pt", lambda: enc.lower(["passage: " + c["text"] for c in tchunks], 512))
        tqs = cached(cache / f"train{a.train_docs}-human-{a.cut}.pt", lambda: enc.lower(["query: " + q["text"] for q in tq], 128))
        tpairs = [(i, tcid[q["relevant_chunk_ids"][0]]) for i, q in enumerate(tq) if q["relevant_chunk_ids"] and q["relevant_chunk_ids"][0] in tcid]
        tv = enc.embed(td)
        tqv = enc.embed(tqs)
        tnegs = mine(tqv[[p[0] for p in tpairs]], tv, [{p[1]} for p in tpairs], np.ones(len(tchunks), bool), 3, 0.05)
        sources["human"] = (tqs, td, tpairs, tnegs)
        print(f"ceiling set: {len(tpaths)} articles, {len(tchunks)} chunks, {len(tpairs)} human questions", flush=True)

    t0 = time.time()
    base_d = enc.embed(d_states)
    base_h = enc.embed(h_states)
    base_s = enc.embed(s_states)
    print(f"base embedded in {time.time() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(0)

    lexical = {}
    for h in (0, 1):
        docs, qs = np.where(chunk_half == h)[0], np.where(h_half == h)[0]
        lexical[h] = standardized(bm25_scores([chunks[i]["text"] for i in docs], [human[i]["text"] for i in qs]))

    def judge(dv: np.ndarray, hv: np.ndarray, half: int, hybrid: bool = False):
        """Hits of the model alone, or fused with BM25 as the evaluation's '<model>+bm25' is."""
        docs = np.where(chunk_half == half)[0]
        local = {int(g): j for j, g in enumerate(docs)}
        qs = np.where(h_half == half)[0]
        gold = [{local[g] for g in h_gold[i] if g in local} for i in qs]
        if not hybrid:
            return hits(hv[qs], dv[docs], gold)
        fused = standardized(hv[qs] @ dv[docs].T) + lexical[half]
        top = np.argsort(-fused, axis=1)[:, :10]
        return np.array([top[i, 0] in g for i, g in enumerate(gold)]), np.array([bool(set(top[i]) & g) for i, g in enumerate(gold)])

    base_hits = {h: judge(base_d, base_h, h) for h in (0, 1)}
    base_hybrid = {h: judge(base_d, base_h, h, hybrid=True) for h in (0, 1)}
    for h in (0, 1):
        print(f"base half {h}: acc@1 {base_hits[h][0].mean():.3f} acc@10 {base_hits[h][1].mean():.3f} (n={len(base_hits[h][0])}); "
              f"base+bm25 acc@1 {base_hybrid[h][0].mean():.3f}", flush=True)

    results = []
    for spec in a.runs.split(","):
        source, half, steps, lr, *rest = spec.split(":")
        steps, lr = int(steps), float(lr)
        scale = float(rest[0]) if rest else 20.0
        hardest = len(rest) > 1 and rest[1] == "hardest"
        if source == "ict":
            h = int(half)
            allowed = chunk_half == h
            pairs = [p for p in s_pairs if chunk_half[p[1]] == h]
            negs = mine(base_s[[p[0] for p in pairs]], base_d, [{p[1]} for p in pairs], allowed, 3, 0.05)
            qs, ds, judged = s_states, d_states, [h]
        else:
            qs, ds, pairs, negs = sources[source]
            judged = [0, 1]
        print(f"run {spec}: {len(pairs)} training pairs", flush=True)
        t0 = time.time()
        base_state = train(enc, qs, ds, pairs, negs, steps, lr, 32, 0, scale, hardest)
        secs = time.time() - t0
        dv, hv = enc.embed(d_states), enc.embed(h_states)
        for h in judged:
            a1, a10 = judge(dv, hv, h)
            b1, b10 = base_hits[h]
            r = {"run": spec, "half": h, "trainSeconds": round(secs), "acc1": round(float(a1.mean()), 4), "base_acc1": round(float(b1.mean()), 4),
                 "acc1_gain_ci": [round(x, 4) for x in paired(b1.astype(float), a1.astype(float), rng)],
                 "acc10": round(float(a10.mean()), 4), "base_acc10": round(float(b10.mean()), 4),
                 "acc10_gain_ci": [round(x, 4) for x in paired(b10.astype(float), a10.astype(float), rng)]}
            f1, _ = judge(dv, hv, h, hybrid=True)
            r["hybrid_acc1"] = round(float(f1.mean()), 4)
            r["hybrid_acc1_gain_ci"] = [round(x, 4) for x in paired(base_hybrid[h][0].astype(float), f1.astype(float), rng)]
            print(json.dumps(r), flush=True)
            results.append(r)
        restore(enc, base_state)
    print(json.dumps({"results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
