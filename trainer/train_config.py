"""The training kernel's command line: parsed and checked before anything heavy is imported.

Every value a caller can get wrong is checked here, so a bad run fails in a second with a
TrainerConfigError naming the flag, not ten minutes in with a stack trace.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from failures import TrainerConfigError

LOSSES = ("mnrl", "cached-mnrl", "gist")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    model: str
    train: str
    dev: str | None
    output_dir: str
    export_dir: str | None
    name: str | None
    source: str | None
    loss: str
    guide_model: str | None
    mini_batch_size: int | None
    epochs: float
    max_steps: int | None
    learning_rate: float
    warmup_ratio: float
    batch_size: int
    seed: int
    max_seq_length: int | None
    num_negatives: int | None
    query_prefix: str
    passage_prefix: str
    device: str
    threads: int | None
    precision: str
    save_steps: int
    keep_checkpoints: int
    logging_steps: int | None
    eval_steps: int | None
    evaluate: bool
    resume_from: str | None
    exit_with_stdin: bool
    freeze_embeddings: bool
    train_layers: int | None
    frozen_cache_mb: int
    scale: float
    merge_with_base: str


class _Parser(argparse.ArgumentParser):
    """argparse exits with code 2 and prose on stderr; we want a TrainerConfigError instead."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise TrainerConfigError(message, hint="run `python trainer/train.py --help` for the flags")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="trainer/train.py", description="Fine-tune a sentence-transformers model on (anchor, positive, negatives...) pairs.")
    p.add_argument("--model", required=True, help="sentence-transformers model directory to start from")
    p.add_argument("--train", required=True, help="train.parquet: anchor, positive, negative_1..k")
    p.add_argument("--dev", help="dev.parquet (same columns) for evaluation")
    p.add_argument("--output-dir", required=True, help="checkpoints and the final model (final/) go here")
    p.add_argument("--export-dir", help="also write a model artifact (st/, onnx/, model.json) here")
    p.add_argument("--name", help="model name recorded in model.json")
    p.add_argument("--source", help="where the model came from, recorded in model.json (default: --model)")
    p.add_argument("--loss", default="mnrl", choices=LOSSES)
    p.add_argument("--guide-model", help="guide model directory for --loss gist (default: the base model)")
    p.add_argument(
        "--mini-batch-size",
        type=int,
        help="GradCache mini-batch (texts embedded with gradients at once): --loss cached-mnrl (default 32), or mnrl when smaller than"
        " --batch-size (default on a CPU: automatic for large steps, see memory.py; >= --batch-size turns it off)",
    )
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, help="stop after this many optimisation steps (overrides --epochs)")
    p.add_argument("--learning-rate", type=float, default=2e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-seq-length", type=int, help="truncate inputs to this many tokens (default: the model's)")
    p.add_argument("--num-negatives", type=int, help="use at most this many negative_* columns (default: all)")
    p.add_argument("--query-prefix", default="", help="prepended to anchors, e.g. 'query: '")
    p.add_argument("--passage-prefix", default="", help="prepended to positives and negatives, e.g. 'passage: '")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice, one per core)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="auto: bf16 (fp16 before Ampere) on CUDA; on a CPU bf16 only with avx512_bf16 or amx_bf16, else fp32")
    p.add_argument("--save-steps", type=int, default=500, help="checkpoint every N optimisation steps (and at the end)")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="complete checkpoints kept on disk")
    p.add_argument("--logging-steps", type=int, default=None, help="one JSON progress line every N steps (default: 1 on a CPU, 10 on a GPU)")
    p.add_argument("--eval-steps", type=int, help="evaluate on --dev every N steps (default: only at the end)")
    p.add_argument("--no-evaluate", dest="evaluate", action="store_false", help="skip the dev-set evaluation")
    p.add_argument("--resume-from", help="checkpoint directory to continue from (optimizer, scheduler and RNG state included)")
    p.add_argument("--freeze-embeddings", action="store_true", help="keep the word-embedding matrix as the base has it")
    p.add_argument("--train-layers", type=int, help="train only the top N transformer layers; the embeddings and the layers below stay as the base has them")
    p.add_argument("--frozen-cache-mb", type=int, default=2048, help="with --train-layers: MB of the frozen layers' output kept per text, so each text runs through them once (0: off)")
    p.add_argument(
        "--scale",
        type=float,
        default=20.0,
        help="similarity scale of the contrastive loss (1 / temperature): 20 is sentence-transformers' default; a base trained at"
        " another temperature keeps its own (multilingual-e5: 0.01, so 100)",
    )
    p.add_argument(
        "--merge-with-base",
        default="1",
        help="share of the fine-tuned weights in the saved model (WiSE-FT): 1 = as trained, 0.5 = halfway to the base, "
        "'auto' = 0.5 or 1, whichever scores higher on --dev, only if its gain over the base is beyond noise, else 0 (the base itself)",
    )
    p.add_argument("--exit-with-stdin", action="store_true", help="exit when stdin closes (the parent died)")
    return p


def _require(ok: bool, flag: str, message: str, hint: str) -> None:
    if not ok:
        raise TrainerConfigError(f"{flag}: {message}", where=flag, hint=hint)


def _require_dir(path: str | None, flag: str, marker: str | None = None) -> None:
    if path is None:
        return
    _require(os.path.isdir(path), flag, f"{path} is not a directory", "pass an existing directory")
    if marker:
        _require(
            os.path.exists(os.path.join(path, marker)),
            flag,
            f"{path} has no {marker}",
            "pass a sentence-transformers model directory" if marker == "modules.json" else "pass a complete checkpoint directory",
        )


def output_dir_of(argv: list[str]) -> str | None:
    """--output-dir alone, so even a configuration error is recorded in the run's log."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--output-dir")
    return p.parse_known_args(argv)[0].output_dir


def _is_share(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def parse_config(argv: list[str]) -> TrainConfig:
    a = _parser().parse_args(argv)
    _require_dir(a.model, "--model", "modules.json")
    _require_dir(a.guide_model, "--guide-model", "modules.json")
    _require(os.path.isfile(a.train), "--train", f"{a.train} does not exist", "pass the dataset artifact's train.parquet")
    _require(a.dev is None or os.path.isfile(a.dev), "--dev", f"{a.dev} does not exist", "pass dev.parquet or leave --dev out")
    _require(a.guide_model is None or a.loss == "gist", "--guide-model", "only used by --loss gist", "drop --guide-model or use --loss gist")
    _require(a.batch_size >= 1, "--batch-size", f"must be at least 1, got {a.batch_size}", "use e.g. 32 on CPU, 128 on a GPU")
    _require(a.mini_batch_size is None or a.mini_batch_size >= 1, "--mini-batch-size", f"must be at least 1, got {a.mini_batch_size}", "use e.g. 32")
    _require(a.epochs > 0, "--epochs", f"must be positive, got {a.epochs}", "use e.g. 1")
    _require(a.max_steps is None or a.max_steps >= 1, "--max-steps", f"must be at least 1, got {a.max_steps}", "leave it out to train for --epochs")
    _require(0 < a.learning_rate < 1, "--learning-rate", f"must be in (0, 1), got {a.learning_rate}", "use e.g. 2e-5")
    _require(0 <= a.warmup_ratio < 1, "--warmup-ratio", f"must be in [0, 1), got {a.warmup_ratio}", "use e.g. 0.1")
    _require(a.max_seq_length is None or a.max_seq_length >= 8, "--max-seq-length", f"must be at least 8, got {a.max_seq_length}", "use e.g. 256")
    _require(a.num_negatives is None or a.num_negatives >= 0, "--num-negatives", f"must be >= 0, got {a.num_negatives}", "use e.g. 1")
    _require(a.threads is None or a.threads >= 1, "--threads", f"must be at least 1, got {a.threads}", "leave it out to use every core")
    _require(a.save_steps >= 1, "--save-steps", f"must be at least 1, got {a.save_steps}", "use e.g. 500")
    _require(a.keep_checkpoints >= 1, "--keep-checkpoints", f"must be at least 1, got {a.keep_checkpoints}", "use e.g. 2")
    _require(a.logging_steps is None or a.logging_steps >= 1, "--logging-steps", f"must be at least 1, got {a.logging_steps}", "use e.g. 10")
    _require(a.eval_steps is None or a.eval_steps >= 1, "--eval-steps", f"must be at least 1, got {a.eval_steps}", "leave it out to evaluate only at the end")
    _require(a.train_layers is None or a.train_layers >= 1, "--train-layers", f"must be at least 1, got {a.train_layers}", "leave it out to train every layer")
    _require(a.frozen_cache_mb >= 0, "--frozen-cache-mb", f"must be >= 0, got {a.frozen_cache_mb}", "use 0 to turn the cache off")
    _require(0 < a.scale <= 1000, "--scale", f"must be in (0, 1000], got {a.scale}", "use 20, or 100 for an e5 base")
    _require_dir(a.resume_from, "--resume-from", "trainer_state.json")
    _require(a.merge_with_base == "auto" or _is_share(a.merge_with_base), "--merge-with-base", f"must be 'auto' or a number in [0, 1], got {a.merge_with_base!r}", "use e.g. 0.5 or auto")
    _require(a.merge_with_base != "auto" or a.dev is not None, "--merge-with-base", "'auto' chooses on the dev split, and there is no --dev", "give --dev or a number")
    _require(a.merge_with_base != "auto" or a.evaluate, "--merge-with-base", "'auto' chooses on the dev split, and evaluation is off", "drop --no-evaluate or give a number")
    from pairs import check_columns

    check_columns(a.train, "--train", a.num_negatives)
    if a.dev:
        check_columns(a.dev, "--dev", a.num_negatives)
    return TrainConfig(**vars(a))
