"""Where training runs and in what precision: bf16 (or fp16) on a GPU, fp32 on a CPU."""

from __future__ import annotations

import torch

from failures import TrainerConfigError


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainerConfigError(
            "device 'cuda' was asked for but this machine has no usable CUDA GPU"
            f" (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'})",
            where="device",
            hint="run the stage on a GPU worker (queue 'gpu'), or use device 'auto' or 'cpu'",
        )
    return requested


def pick_precision(requested: str, device: str) -> str:
    if requested == "auto":
        if device == "cuda":
            # bf16 keeps fp32's range (no loss scaling); Volta/Turing GPUs only have fp16.
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if requested == "fp16" and device == "cpu":
        raise TrainerConfigError("precision 'fp16' needs a GPU", where="precision", hint="use 'auto', 'fp32' or 'bf16' on a CPU")
    if requested == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise TrainerConfigError("this GPU has no bf16 support", where="precision", hint="use 'auto' or 'fp16'")
    return requested
