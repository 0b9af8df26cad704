"""How the kernel fails: a named error type, a message, a hint, and an exit code.

The names match core/errors.ts so the TypeScript side can rethrow them as they are.
"""

from __future__ import annotations

import re

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_OOM = 3


class KernelError(Exception):
    type = "TrainerFailedError"
    exit_code = EXIT_FAILED

    def __init__(self, message: str, where: str | None = None, hint: str | None = None, **extra: object) -> None:
        super().__init__(message)
        self.where = where
        self.hint = hint
        self.extra = extra

    def to_json(self) -> dict:
        out: dict = {"type": "error", "error": self.type, "message": str(self)}
        if self.where:
            out["where"] = self.where
        if self.hint:
            out["hint"] = self.hint
        out.update(self.extra)
        return out


class TrainerConfigError(KernelError):
    type = "TrainerConfigError"
    exit_code = EXIT_CONFIG


class OutOfMemoryError(KernelError):
    type = "OutOfMemoryError"
    exit_code = EXIT_OOM


# torch.cuda.OutOfMemoryError, the CPU allocator's RuntimeError, MemoryError under RLIMIT_AS, and
# the same errors re-raised by libraries with their own wording.
_OOM_RE = re.compile(r"out of memory|can't allocate memory|cannot allocate memory|std::bad_alloc|OutOfMemory", re.I)


def is_out_of_memory(err: BaseException) -> bool:
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or _OOM_RE.search(str(e)):
            return True
        e = e.__cause__ or e.__context__
    return False


def out_of_memory(err: BaseException, batch_size: int, device: str, loss: str, mini_batch_size: int | None = None) -> OutOfMemoryError:
    suggested = max(1, batch_size // 2)
    hint = f"try batchSize {suggested}"
    if loss in ("mnrl", "cached-mnrl"):
        mini = max(1, mini_batch_size // 2) if mini_batch_size else (8 if device == "cpu" else 32)
        hint += f" or miniBatchSize {mini} (GradCache: the same loss, memory bounded by the mini-batch)"
    return OutOfMemoryError(
        f"out of {'GPU' if device == 'cuda' else 'CPU'} memory at batch size {batch_size}: {str(err).splitlines()[0][:300] if str(err) else type(err).__name__}",
        where="batchSize",
        hint=hint,
        batchSize=batch_size,
        suggestedBatchSize=suggested,
        device=device,
    )
