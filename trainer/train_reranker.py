"""Train a small domain cross-encoder (reranker) from embedflow's synthetic pairs, export it to ONNX.

No reranker can be downloaded on an offline machine, so the comparison "fine-tuned bi-encoder vs
base + reranker" uses a reranker built from the same data: a sentence-transformers CrossEncoder
started from the base model's transformer, trained listwise — each query scores its positive chunk
and its hard negatives together, and a softmax cross-entropy puts the positive first (the loss
rerankers such as bge-reranker are trained with).

    python trainer/train_reranker.py --model ST_DIR --train train.parquet --out DIR [options]

Writes DIR/{st/, onnx/model.onnx, reranker.json, training_log.jsonl}. Progress goes to stdout as
JSON lines {"event": "progress", "step", "total", "loss"}; the last stdout line is reranker.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from device import pick_precision  # noqa: E402
from memory import peak_rss_mb  # noqa: E402
from parent_watch import exit_when_stdin_closes  # noqa: E402

# Pairs to check the ONNX export against PyTorch (Japanese and Latin, one truncated).
_CHECK_PAIRS = [
    ("東京の人口は?", "東京都の人口は約1400万人で、日本の首都である。"),
    ("What is the capital of France?", "Paris is the capital and largest city of France."),
    ("富士山の標高", "富士山は静岡県と山梨県にまたがる活火山である。" * 40),
]
MAX_ABS_DIFF = 1e-3


class RerankerError(Exception):
    """Bad input for training; the message says what to change."""


def emit(event: dict) -> None:
    print(json.dumps(event, ensure_ascii=False), flush=True)


# 1. Data: one group per query — (query, positive, negatives...).
def load_groups(train_path: Path, negatives: int, max_queries: int, seed: int) -> list[tuple[str, str, list[str]]]:
    table = pq.read_table(train_path)
    names = table.column_names
    for col in ("anchor", "positive"):
        if col not in names:
            raise RerankerError(f"{train_path} has no column {col!r} (columns: {names})")
    # negative_1..negative_k hold texts; negative_ids (a list of chunk ids) is not one of them.
    neg_cols = sorted((c for c in names if re.fullmatch(r"negative_\d+", c)), key=lambda c: int(c.split("_")[1]))
    if not neg_cols:
        raise RerankerError(f"{train_path} has no negative_1.. columns: the reranker learns from hard negatives")
    rows = table.select(["anchor", "positive", *neg_cols]).to_pylist()
    groups = []
    for r in rows:
        negs = [r[c] for c in neg_cols if r[c]][:negatives]
        if negs:
            groups.append((r["anchor"], r["positive"], negs))
    if not groups:
        raise RerankerError(f"{train_path}: no row has both a positive and a negative")
    random.Random(seed).shuffle(groups)
    return groups[:max_queries] if max_queries > 0 else groups


# 2. Model: a CrossEncoder with one output logit on top of the base model's transformer.
def load_model(base_dir: Path, max_length: int):
    from sentence_transformers import CrossEncoder

    transformer_dir = base_dir
    # A sentence-transformers dir may keep the HF transformer in a sub-folder (modules.json says where).
    modules = base_dir / "modules.json"
    if modules.is_file():
        for m in json.loads(modules.read_text()):
            if m.get("type", "").endswith("Transformer") and m.get("path"):
                transformer_dir = base_dir / m["path"]
    return CrossEncoder(
        str(transformer_dir),
        num_labels=1,
        max_length=max_length,
        device="cpu",
        model_kwargs={"attn_implementation": "eager"},
    )


# 3. Train: listwise softmax cross-entropy, positive at index 0 of each group.
def train(model, groups, *, batch_queries: int, max_steps: int, epochs: float, lr: float, precision: str, log_path: Path) -> dict:
    hf_model, tokenizer = model.model, model.tokenizer
    hf_model.train()
    steps_per_epoch = max(1, len(groups) // batch_queries)
    total = min(max_steps, max(1, int(steps_per_epoch * epochs))) if max_steps > 0 else max(1, int(steps_per_epoch * epochs))
    optimizer = torch.optim.AdamW(hf_model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, total // 10)
    # Linear warm-up over the first 10% of steps, then linear decay to 0.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    t0 = time.time()
    last_loss = float("nan")
    with log_path.open("w") as log:
        for step in range(total):
            start = (step * batch_queries) % len(groups)
            batch = [groups[(start + i) % len(groups)] for i in range(batch_queries)]
            width = min(len(g[2]) for g in batch) + 1
            queries, passages = [], []
            for q, pos, negs in batch:
                for p in [pos, *negs[: width - 1]]:
                    queries.append(q)
                    passages.append(p)
            enc = tokenizer(queries, passages, padding=True, truncation=True, max_length=model.max_seq_length, return_tensors="pt")
            # Weights and optimizer state stay fp32; only the forward's matrix maths run in bf16.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = hf_model(**enc).logits.view(len(batch), width)
            loss = torch.nn.functional.cross_entropy(logits.float(), torch.zeros(len(batch), dtype=torch.long))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(hf_model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            last_loss = float(loss.item())
            entry = {"step": step + 1, "loss": last_loss, "lr": scheduler.get_last_lr()[0], "elapsed_s": round(time.time() - t0, 3)}
            log.write(json.dumps(entry) + "\n")
            log.flush()
            emit({"event": "progress", "step": step + 1, "total": total, "loss": last_loss})
    hf_model.eval()
    return {"steps": total, "finalLoss": last_loss, "trainSeconds": round(time.time() - t0, 3)}


# 4. Export: ONNX with the tokenizer's input names and a `logits` output, checked against PyTorch.
class _Logits(torch.nn.Module):
    def __init__(self, model, input_names):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.input_names, inputs))).logits


def export_onnx(model, onnx_path: Path, opset: int = 17) -> list[str]:
    tokenizer = model.tokenizer
    input_names = [n for n in tokenizer.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]
    sample = tokenizer(["query one", "q2"], ["a passage", "another, longer passage"], padding=True, return_tensors="pt")
    dynamic = {n: {0: "batch", 1: "sequence"} for n in input_names}
    dynamic["logits"] = {0: "batch"}
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            _Logits(model.model, input_names).eval(),
            tuple(sample[n] for n in input_names),
            str(onnx_path),
            input_names=input_names,
            output_names=["logits"],
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    qs, ps = zip(*_CHECK_PAIRS)
    enc = model.tokenizer(list(qs), list(ps), padding=True, truncation=True, max_length=model.max_seq_length, return_tensors="pt")
    with torch.no_grad():
        reference = model.model(**enc).logits.numpy()
    (got,) = session.run(["logits"], {n: enc[n].numpy().astype(np.int64) for n in input_names})
    diff = float(np.abs(reference - got).max())
    if diff > MAX_ABS_DIFF:
        raise RerankerError(f"the ONNX export disagrees with PyTorch (max |Δlogit| {diff:.2e} > {MAX_ABS_DIFF})")
    return input_names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path, help="base model: a sentence-transformers or HF directory")
    ap.add_argument("--train", required=True, type=Path, help="train.parquet of a `dataset` artifact")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--name", default="reranker")
    ap.add_argument("--negatives", type=int, default=3, help="hard negatives per query in a group")
    ap.add_argument("--max-queries", type=int, default=0, help="use at most this many training queries (0 = all)")
    ap.add_argument("--batch-queries", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="auto: bf16 where the CPU has avx512_bf16 or amx_bf16, else fp32")
    ap.add_argument("--exit-with-stdin", action="store_true", help="exit when stdin closes (the parent process is gone)")
    a = ap.parse_args()

    if a.exit_with_stdin:
        exit_when_stdin_closes()
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    choice = pick_precision(a.precision, "cpu")
    print(f"[train_reranker] precision {choice.reason}", file=sys.stderr)
    try:
        groups = load_groups(a.train, a.negatives, a.max_queries, a.seed)
        model = load_model(a.model, a.max_length)
        a.out.mkdir(parents=True, exist_ok=True)
        stats = train(
            model, groups, batch_queries=a.batch_queries, max_steps=a.max_steps, epochs=a.epochs, lr=a.lr,
            precision=choice.precision, log_path=a.out / "training_log.jsonl",
        )
        model.save(str(a.out / "st"), create_model_card=False)  # the artifact's README.md is the card; this one holds timings
        input_names = export_onnx(model, a.out / "onnx" / "model.onnx")
    except RerankerError as err:
        print(f"RerankerError: {err}", file=sys.stderr)
        return 2
    info = {
        "name": a.name,
        "source": "trainReranker",
        "base": str(a.model),
        "maxSeqLength": a.max_length,
        "inputNames": input_names,
        "outputName": "logits",
        "onnx": {"fp32": "onnx/model.onnx"},
        "trainQueries": len(groups),
        "negativesPerQuery": a.negatives,
        "precision": choice.precision,
        "precisionReason": choice.reason,
        "peakRssMB": peak_rss_mb(),
        **stats,
    }
    (a.out / "reranker.json").write_text(json.dumps(info, indent=2, ensure_ascii=False))
    print(json.dumps(info, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
