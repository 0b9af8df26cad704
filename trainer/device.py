"""Where training runs, and in what precision and why.

'auto' precision is the fastest exact-enough choice on each device: bf16 (fp16 on pre-Ampere) on a
GPU; on a CPU bf16 only where the CPU multiplies bf16 natively (AVX512-BF16 or AMX), fp32 elsewhere.
Without those instructions torch still runs bf16, emulated with fp32 ones: correct but slower than fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

from failures import TrainerConfigError

# /proc/cpuinfo flag names of native bf16 matrix maths, fastest first.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    reason: str


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's feature flags, or None where the OS does not say (no /proc: macOS, Windows)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        return None
    return None


def cpu_bf16_flag(flags: frozenset[str] | None) -> str | None:
    return next((f for f in CPU_BF16_FLAGS if flags and f in flags), None)


def pick_device(requested: str) -> str:
    import torch

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


def _gpu_bf16() -> bool:
    import torch

    return torch.cuda.is_bf16_supported()


def pick_precision(requested: str, device: str, cpuinfo: str = "/proc/cpuinfo") -> PrecisionChoice:
    """`cpuinfo`: where the CPU's flags are read from (tests give their own file)."""
    if device == "cuda":
        if requested == "auto":
            # bf16 keeps fp32's range (no loss scaling); Volta/Turing GPUs only have fp16.
            if _gpu_bf16():
                return PrecisionChoice("bf16", "bf16: the GPU supports it")
            return PrecisionChoice("fp16", "fp16: the GPU has no bf16 (pre-Ampere)")
        if requested == "bf16" and not _gpu_bf16():
            raise TrainerConfigError("this GPU has no bf16 support", where="precision", hint="use 'auto' or 'fp16'")
        return PrecisionChoice(requested, f"{requested}: asked for")

    if requested == "fp16":
        raise TrainerConfigError("precision 'fp16' needs a GPU", where="precision", hint="use 'auto', 'fp32' or 'bf16' on a CPU")
    flags = cpu_flags(cpuinfo)
    native = cpu_bf16_flag(flags)
    if requested == "auto":
        if native:
            return PrecisionChoice("bf16", f"bf16: CPU has {native}")
        if flags is None:
            return PrecisionChoice("fp32", f"fp32: the CPU's flags are unknown (no flags line in {cpuinfo})")
        return PrecisionChoice("fp32", "fp32: CPU has no avx512_bf16 or amx_bf16 (bf16 would be emulated, slower)")
    if requested == "bf16" and not native:
        return PrecisionChoice("bf16", "bf16: asked for; this CPU has no avx512_bf16 or amx_bf16, so torch emulates it (slower than fp32)")
    return PrecisionChoice(requested, f"{requested}: asked for")
