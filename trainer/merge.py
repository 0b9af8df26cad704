"""Weight-space ensembling of a fine-tuned model with its base (WiSE-FT, Wortsman et al. 2022).

A strong base fine-tuned on a small synthetic set often gains on that set's kind of query and loses on
the questions people ask; averaging the weights keeps most of the gain and most of the base's
generality. With 'auto' the share is chosen on the dev split, and the base itself is the default: a
share of the fine-tune is kept only when its gain over the base on dev is beyond the noise of that
split (the lower end of a paired bootstrap 95% interval above zero). Measured on jaquad-dev, a
143-query dev split preferred a fine-tune by +0.002 nDCG@10 that then lost a point of accuracy@1 on
3,939 human questions: a gain that small says nothing, and the base is the safer model to hand over.
"""

from __future__ import annotations

import math

import numpy as np

from json_lines import emit

# Each candidate costs one dev evaluation (the dev corpus re-encoded): three is what a CPU run affords.
CANDIDATES = (0.0, 0.5, 1.0)
DEV_METRIC = "dev_cosine_ndcg@10"
BOOTSTRAP_ROUNDS = 2000
CONFIDENCE = 0.95


def _mix(trained: dict, base: dict, share: float) -> dict:
    return {k: (share * v + (1 - share) * base[k]) if v.is_floating_point() else v for k, v in trained.items()}


def per_query_ndcg(model, evaluator, k: int = 10) -> np.ndarray:
    """nDCG@k of each dev query (binary relevance, cosine), in the evaluator's query order: the
    evaluator reports only means, and a paired comparison needs each query's score."""
    q = model.encode(evaluator.queries, prompt=evaluator.query_prompt, batch_size=evaluator.batch_size, normalize_embeddings=True, convert_to_numpy=True)
    c = model.encode(evaluator.corpus, prompt=evaluator.corpus_prompt, batch_size=evaluator.batch_size, normalize_embeddings=True, convert_to_numpy=True)
    top = np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :k]
    # A dev corpus smaller than k (a small corpus's dev split) ranks all it has.
    discount = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    out = np.zeros(len(evaluator.queries_ids))
    for i, qid in enumerate(evaluator.queries_ids):
        relevant = evaluator.relevant_docs[qid]
        gains = np.array([evaluator.corpus_ids[j] in relevant for j in top[i]], dtype=float)
        ideal = discount[: min(len(relevant), k)].sum()
        out[i] = float(gains @ discount) / ideal if ideal > 0 else 0.0
    return out


def paired_gain_interval(base: np.ndarray, other: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean of other − base per query and its paired bootstrap interval (queries resampled together)."""
    diff = other - base
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(BOOTSTRAP_ROUNDS, len(diff)))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(diff.mean()), float(low), float(high)


def merge_with_base(model, base_dir: str, how: str, evaluator, known: dict[float, dict] | None = None) -> dict:
    """Replace `model`'s weights by share·fine-tuned + (1−share)·base; returns what was chosen, why, and
    the chosen model's dev metrics. `known`: dev metrics already measured for a share (the base's, from
    the evaluation before the first step), not measured again."""
    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(base_dir, device=model.device.type, local_files_only=True).state_dict()
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if how != "auto":
        share = float(how)
        model.load_state_dict(_mix(trained, base, share))
        return {"share": share, "chosenBy": "parameter", "candidates": [], "metrics": None}
    per_query: dict[float, np.ndarray] = {}
    for share in CANDIDATES:
        model.load_state_dict(_mix(trained, base, share))
        per_query[share] = per_query_ndcg(model, evaluator)
        emit({"type": "status", "message": f"merge with base: share {share} → dev ndcg@10 {per_query[share].mean():.4f}"})
    candidates = []
    for share in CANDIDATES:
        gain, low, high = paired_gain_interval(per_query[0.0], per_query[share])
        candidates.append({"share": share, DEV_METRIC: float(per_query[share].mean()), "gain": gain, "gainLow": low, "gainHigh": high})
    # Ties go to the smaller share: closer to the base is the safer model.
    best = max(candidates[1:], key=lambda c: (c[DEV_METRIC], -c["share"]))
    keep = best if best["gainLow"] > 0 else candidates[0]
    chosen_by = "dev gain beyond noise" if keep is best else "no dev gain beyond noise: the base is kept"
    emit({"type": "status", "message": f"merge with base: share {keep['share']} kept ({chosen_by}; best share {best['share']}: "
          f"{best['gain']:+.4f} [{best['gainLow']:+.4f}, {best['gainHigh']:+.4f}] over the base on {len(per_query[0.0])} dev queries)"})
    model.load_state_dict(_mix(trained, base, keep["share"]))
    metrics = (known or {}).get(keep["share"])
    if not metrics or metrics.get(DEV_METRIC) is None or not math.isfinite(metrics[DEV_METRIC]):
        metrics = evaluator(model)
    return {"share": keep["share"], "chosenBy": chosen_by, "candidates": candidates, "metrics": metrics}
