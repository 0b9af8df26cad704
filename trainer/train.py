"""Fine-tune a sentence-transformers embedding model on the dataset artifact's (anchor, positive, negatives) rows.

    python trainer/train.py --model ST_DIR --train train.parquet [--dev dev.parquet] --output-dir DIR \
        [--export-dir OUT] [--loss mnrl|cached-mnrl|gist] [--max-steps N | --epochs E] [--batch-size B] ...

stdout: JSON lines only (start, status, progress, checkpoint, eval, then done or error), also appended to
DIR/progress.jsonl (every attempt's record, kept across crashes); stderr: everything else.
Exit codes: 0 done, 2 bad configuration (TrainerConfigError), 3 out of memory, 1 any other failure.
Checkpoints (DIR/checkpoint-N, complete when they hold embedflow-checkpoint.json) carry optimizer,
scheduler and RNG state: `--resume-from DIR/checkpoint-N` continues the same run step for step.
The trained model is saved to DIR/final and, with --export-dir, exported as a `model` artifact.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback

# No hub on the machines this runs on; never wait on one. Set before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from failures import KernelError, TrainerConfigError, is_out_of_memory, out_of_memory  # noqa: E402
from json_lines import also_log_to, emit, reserve_stdout  # noqa: E402
from parent_watch import exit_when_stdin_closes  # noqa: E402
from train_config import TrainConfig, output_dir_of, parse_config  # noqa: E402


def make_loss(cfg: TrainConfig, model, grad_cache):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses

    if grad_cache is not None:
        return losses.CachedMultipleNegativesRankingLoss(model, scale=cfg.scale, mini_batch_size=grad_cache.mini_batch)
    if cfg.loss == "gist":
        guide = SentenceTransformer(cfg.guide_model or cfg.model, device=model.device.type, local_files_only=True)
        if cfg.max_seq_length:
            guide.max_seq_length = cfg.max_seq_length
        return losses.GISTEmbedLoss(model, guide, temperature=1.0 / cfg.scale)
    return losses.MultipleNegativesRankingLoss(model, scale=cfg.scale)


def freeze_below_top(auto_model, n: int) -> float:
    """Only the top n transformer layers learn. The lower layers hold what the base learnt from far more
    text than a corpus has, and no gradient flows below the first trainable layer, so a step is cheaper too."""
    encoder = getattr(auto_model, "encoder", None)
    layers = getattr(encoder, "layer", None) if encoder is not None else getattr(auto_model, "layers", None)
    if layers is None:
        raise TrainerConfigError(f"{type(auto_model).__name__} has no encoder.layer or layers list", where="--train-layers", hint="leave --train-layers out to train every layer")
    if n > len(layers):
        raise TrainerConfigError(f"the model has {len(layers)} layers, asked to train the top {n}", where="--train-layers", hint=f"use at most {len(layers)}")
    for p in auto_model.parameters():
        p.requires_grad_(False)
    top = layers[len(layers) - n:]
    for layer in top:
        for p in layer.parameters():
            p.requires_grad_(True)
    # The frozen part runs as at inference, without dropout: otherwise the top layers learn from noised
    # states they never see once exported (the Trainer puts the whole model in train mode every step).
    trained = {id(m) for layer in top for m in layer.modules()}
    for module in auto_model.modules():
        # Not a trained module, nor one holding a trained layer (the model, its encoder, the layer list).
        if not any(id(m) in trained for m in module.modules()):
            _stay_in_eval(module)
    return n / len(layers)


def _stay_in_eval(module) -> None:
    module.eval()
    # An instance attribute shadows nn.Module.train, and a parent's train() calls each child's.
    module.train = lambda mode=True: module


def save_final(model, output_dir: str) -> str:
    """output_dir/final, replaced atomically: a reader sees the old model or the new one."""
    final = os.path.join(output_dir, "final")
    tmp = f"{final}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    # No sentence-transformers card: its "Training Time" made two identical runs' artifacts differ,
    # and the artifact's own README.md (activities/models/modelCard.ts) is the card.
    model.save(tmp, create_model_card=False)
    old = f"{final}.old-{os.getpid()}"
    if os.path.exists(final):
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _base_dev_metrics(trainer) -> dict:
    """The dev evaluation before the first step (eval_on_start), named as the evaluator names them."""
    for entry in trainer.state.log_history:
        if entry.get("step") == 0 and any(k.startswith("eval_dev_") for k in entry):
            return {k[len("eval_"):]: v for k, v in entry.items() if k.startswith("eval_dev_")}
    return {}


def train(cfg: TrainConfig, device: str, precision: str) -> dict:
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    import torch
    from transformers import PrinterCallback

    from checkpoints import CheckpointCallback
    from frozen_cache import cache_frozen_states
    from dev_evaluator import build_dev_evaluator
    from memory import grad_cache_plan, peak_rss_mb
    from pairs import load_pairs
    from progress import JsonProgressCallback

    if cfg.threads:
        # On a shared machine, fewer threads than cores avoids OpenMP threads spinning against each other.
        torch.set_num_threads(cfg.threads)

    # 1. Model
    emit({"type": "status", "message": f"loading {cfg.model} on {device} ({precision})"})
    model = SentenceTransformer(cfg.model, device=device, local_files_only=True)
    model_max_seq_length = model.max_seq_length
    if cfg.max_seq_length:
        model.max_seq_length = cfg.max_seq_length
    if cfg.freeze_embeddings:
        # A multilingual vocabulary is most of a small model's weights (e5-small: 96M of 118M), and a
        # corpus shows few of its tokens: updating them only drifts the rest away from what the base knew.
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    trained_share = freeze_below_top(model[0].auto_model, cfg.train_layers) if cfg.train_layers else 1.0
    frozen_cache = cache_frozen_states(model[0].auto_model, cfg.train_layers, cfg.frozen_cache_mb) if cfg.train_layers else None

    # 2. Data
    train_dataset, dropped = load_pairs(cfg.train, "--train", cfg.num_negatives)
    if len(train_dataset) < 2:
        raise TrainerConfigError(f"{cfg.train} has {len(train_dataset)} usable row(s)", where="--train", hint="in-batch negatives need at least 2 rows")
    if cfg.batch_size > len(train_dataset):
        print(f"[train] batch size {cfg.batch_size} > {len(train_dataset)} rows: every batch is the whole dataset", file=sys.stderr)
    prompts = {k: v for k, v in {"anchor": cfg.query_prefix, "positive": cfg.passage_prefix}.items() if v}
    if cfg.passage_prefix:
        prompts.update({c: cfg.passage_prefix for c in train_dataset.column_names if c.startswith("negative_")})

    # 3. Loss (MNRL as GradCache where its graph would not fit: the same loss in bounded memory)
    grad_cache = grad_cache_plan(cfg.loss, cfg.batch_size, cfg.mini_batch_size, len(train_dataset.column_names), model.max_seq_length, device, trained_share)
    if grad_cache is not None:
        emit({"type": "status", "message": f"GradCache in mini-batches of {grad_cache.mini_batch} texts ({grad_cache.reason})"})
    loss = make_loss(cfg, model, grad_cache)

    # 4. Evaluator
    evaluator = build_dev_evaluator(cfg.dev, cfg.query_prefix, cfg.passage_prefix, cfg.batch_size) if cfg.dev and cfg.evaluate else None
    eval_dataset = load_pairs(cfg.dev, "--dev", cfg.num_negatives)[0] if evaluator is not None and cfg.eval_steps else None

    # 5. Training arguments
    args = SentenceTransformerTrainingArguments(
        output_dir=cfg.output_dir,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        # In-batch negatives: a duplicate text in a batch would be a false negative.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts=prompts or None,
        eval_strategy="steps" if eval_dataset is not None else "no",
        # The base's own dev figures, so a fine-tune that ends below where it started is seen as such
        # (a resumed run has them in its checkpoint's log history).
        eval_on_start=evaluator is not None and cfg.resume_from is None,
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=None,  # rotation is CheckpointCallback's, after a checkpoint is complete
        logging_strategy="steps",
        # A CPU step of a 12-layer model takes a minute: a line every 10 steps would leave the log silent for ten.
        logging_steps=cfg.logging_steps or (1 if device == "cpu" else 10),
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )

    # 6. Train
    checkpoints = CheckpointCallback(cfg.keep_checkpoints, cfg.resume_from)
    progress = JsonProgressCallback(cfg.batch_size, checkpoints)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        loss=loss,
        evaluator=evaluator,
        callbacks=[checkpoints, progress],
    )
    trainer.remove_callback(PrinterCallback)
    start = {"type": "start", "device": device, "precision": precision, "rows": len(train_dataset), "droppedRows": dropped, "resumeFrom": cfg.resume_from}
    if device == "cuda":
        start["gpu"] = torch.cuda.get_device_name()
    emit(start)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=cfg.resume_from)
    train_seconds = time.perf_counter() - t0

    # 7. Merge with the base (WiSE-FT), then save (--max-seq-length bounds training cost only; the model
    #    keeps the length it supports)
    model.max_seq_length = model_max_seq_length
    merge = None
    if cfg.merge_with_base != "1":
        from merge import merge_with_base

        merge = merge_with_base(model, cfg.model, cfg.merge_with_base, evaluator, known={0.0: _base_dev_metrics(trainer)})
    final = save_final(model, cfg.output_dir)
    metrics = {}
    if evaluator is not None:
        # A merge chosen on dev has measured the model it kept: no second pass over the dev corpus.
        metrics = (merge or {}).pop("metrics", None) or {}
        if not metrics:
            emit({"type": "status", "message": "evaluating on the dev split"})
            metrics = evaluator(model)
        emit({"type": "eval", "step": trainer.state.global_step, "metrics": metrics, "final": True})
    elif merge:
        merge.pop("metrics", None)

    # 8. Export as a `model` artifact (st/, onnx/ fp32 + int8, model.json)
    export = None
    if cfg.export_dir:
        from export_model import export_model

        emit({"type": "status", "message": "exporting: sentence-transformers dir, ONNX fp32 and int8"})
        t0 = time.perf_counter()
        export = export_model(final, cfg.export_dir, name=cfg.name or "finetuned", source=cfg.source or cfg.model, query_prefix=cfg.query_prefix, passage_prefix=cfg.passage_prefix)
        export["seconds"] = round(time.perf_counter() - t0, 3)

    return {
        "type": "done",
        "step": trainer.state.global_step,
        "total": trainer.state.max_steps,
        "stepsExecuted": progress.steps_executed,
        "trainLoss": result.training_loss if progress.steps_executed else None,
        "trainSeconds": round(train_seconds, 3),
        "samplesPerSecond": round(progress.steps_executed * cfg.batch_size / train_seconds, 2) if train_seconds > 0 else None,
        "peakGpuMemoryMB": round(torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" else None,
        "peakRssMB": peak_rss_mb(),
        "gradCacheMiniBatch": grad_cache.mini_batch if grad_cache else None,
        "frozenCache": frozen_cache.stats() if frozen_cache else None,
        "checkpointSeconds": [round(s, 3) for s in checkpoints.save_seconds],
        "lastCheckpoint": checkpoints.last_checkpoint,
        "finalModel": final,
        "device": device,
        "precision": precision,
        "rows": len(train_dataset),
        "droppedRows": dropped,
        "evalMetrics": metrics,
        "merge": merge,
        "export": export,
    }


def main(argv: list[str]) -> int:
    reserve_stdout()
    cfg: TrainConfig | None = None
    device = "cpu"
    try:
        if output_dir := output_dir_of(argv):
            also_log_to(os.path.join(output_dir, "progress.jsonl"))
        cfg = parse_config(argv)
        if cfg.exit_with_stdin:
            exit_when_stdin_closes()
        from device import pick_device, pick_precision

        device = pick_device(cfg.device)
        choice = pick_precision(cfg.precision, device)
        emit({"type": "status", "message": f"precision {choice.reason}"})
        emit({**train(cfg, device, choice.precision), "precisionReason": choice.reason})
        return 0
    except KernelError as err:
        emit(err.to_json())
        return err.exit_code
    except SystemExit:
        raise  # --help
    except BaseException as err:  # noqa: BLE001 — every failure must become one JSON error line
        traceback.print_exc(file=sys.stderr)
        if cfg is not None and is_out_of_memory(err):
            oom = out_of_memory(err, cfg.batch_size, device, cfg.loss, cfg.mini_batch_size)
            emit(oom.to_json())
            return oom.exit_code
        if type(err).__name__ == "ExportError":
            emit({"type": "error", "error": "TrainerFailedError", "message": f"export failed: {err}", "where": "export"})
            return 1
        emit({"type": "error", "error": "TrainerFailedError", "message": f"{type(err).__name__}: {err}"[:2000]})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
