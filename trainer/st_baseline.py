"""The benchmark baseline: the same training, written the way the sentence-transformers docs write it.

No embedflow machinery (no JSON lines, checkpoint markers, parent watch, export): bench/training.ts
compares the train stage's samples/s against this script's with the same configuration.

    python trainer/st_baseline.py --model ST_DIR --train train.parquet [--max-steps N] [--batch-size B] ...

Prints one JSON line: {"steps", "trainSeconds", "samplesPerSecond", "peakGpuMemoryMB", "peakRssMB", "device", "precision"}.
Precision 'auto' is the train stage's choice (device.py), so the two compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--loss", default="mnrl", choices=("mnrl", "cached-mnrl"))
    p.add_argument("--mini-batch-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--learning-rate", type=float, default=2e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--max-seq-length", type=int)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()

    import pyarrow.parquet as pq
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import losses

    from device import pick_precision
    from memory import peak_rss_mb

    if a.threads:
        torch.set_num_threads(a.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = pick_precision(a.precision, device).precision

    # 1. Model
    model = SentenceTransformer(a.model, device=device)
    if a.max_seq_length:
        model.max_seq_length = a.max_seq_length
    # 2. Data
    table = pq.read_table(a.train)
    cols = ["anchor", "positive", *sorted((c for c in table.column_names if c.startswith("negative_") and c != "negative_ids"), key=lambda c: int(c.split("_")[1]))]
    train_dataset = Dataset(table.select(cols))
    # 3. Loss
    if a.loss == "cached-mnrl":
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=a.mini_batch_size)
    else:
        loss = losses.MultipleNegativesRankingLoss(model)
    # 5. Training arguments
    with tempfile.TemporaryDirectory() as out:
        args = SentenceTransformerTrainingArguments(
            output_dir=out,
            num_train_epochs=a.epochs,
            max_steps=a.max_steps,
            per_device_train_batch_size=a.batch_size,
            learning_rate=a.learning_rate,
            warmup_steps=a.warmup_ratio,
            seed=a.seed,
            use_cpu=device == "cpu",
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="no",
            report_to="none",
            logging_steps=10,
            disable_tqdm=True,
        )
        # 6. Train
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    steps = trainer.state.global_step
    print(
        json.dumps(
            {
                "steps": steps,
                "trainSeconds": round(seconds, 3),
                "samplesPerSecond": round(steps * a.batch_size / seconds, 2),
                "peakGpuMemoryMB": round(torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" else None,
                "peakRssMB": peak_rss_mb(),
                "device": device,
                "precision": precision,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
