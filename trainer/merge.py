"""Weight-space ensembling of a fine-tuned model with its base (WiSE-FT, Wortsman et al. 2022).

A strong base fine-tuned on a small synthetic set often gains on that set's kind of query and loses on
the questions people ask; averaging the weights keeps most of the gain and most of the base's
generality. With 'auto' the share is chosen on the dev split, and 0 (the base itself) is a candidate:
a fine-tune that helps nowhere yields the base, never something worse than it on dev.
"""

from __future__ import annotations

from json_lines import emit

# Each candidate costs one dev evaluation (the dev corpus re-encoded): three is what a CPU run affords.
CANDIDATES = (0.0, 0.5, 1.0)
DEV_METRIC = "dev_cosine_ndcg@10"


def _mix(trained: dict, base: dict, share: float) -> dict:
    return {k: (share * v + (1 - share) * base[k]) if v.is_floating_point() else v for k, v in trained.items()}


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
    scores, metrics = [], {}
    for share in CANDIDATES:
        if known and share in known and known[share].get(DEV_METRIC) is not None:
            metrics[share] = known[share]
        else:
            model.load_state_dict(_mix(trained, base, share))
            metrics[share] = evaluator(model)
        score = metrics[share].get(DEV_METRIC)
        scores.append({"share": share, DEV_METRIC: score})
        emit({"type": "status", "message": f"merge with base: share {share} → dev ndcg@10 {score:.4f}"})
    # Ties go to the smaller share: closer to the base is the safer model.
    best = max(scores, key=lambda c: (c[DEV_METRIC], -c["share"]))
    model.load_state_dict(_mix(trained, base, best["share"]))
    return {"share": best["share"], "chosenBy": DEV_METRIC, "candidates": scores, "metrics": metrics[best["share"]]}
