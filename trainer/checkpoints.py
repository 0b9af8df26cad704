"""Checkpoints a killed run can trust.

The HF Trainer writes checkpoint-N/ file by file (model, optimizer, scheduler, RNG state, trainer
state), so a kill mid-save leaves a directory that looks like a checkpoint but is not one. After the
Trainer has saved, we fsync every file and then atomically write a marker; only marked directories
count (activities/training/checkpoints.ts reads the same marker). Rotation is ours too, run after
marking, so the newest complete checkpoint is never deleted before its successor is complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

from transformers import TrainerCallback

MARKER = "embedflow-checkpoint.json"
_DIR_RE = re.compile(r"^checkpoint-(\d+)$")


def _fsync(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_complete(checkpoint_dir: str, step: int) -> None:
    files = []
    for root, _dirs, names in os.walk(checkpoint_dir):
        for name in names:
            path = os.path.join(root, name)
            _fsync(path)
            files.append(os.path.relpath(path, checkpoint_dir))
        _fsync(root, directory=True)
    tmp = os.path.join(checkpoint_dir, f".{MARKER}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"step": step, "files": sorted(files), "completedAt": time.time()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(checkpoint_dir, MARKER))
    _fsync(checkpoint_dir, directory=True)


def checkpoint_dirs(output_dir: str) -> list[tuple[int, str, bool]]:
    """(step, path, complete) for every checkpoint-N directory, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    out = []
    for name in os.listdir(output_dir):
        m = _DIR_RE.match(name)
        path = os.path.join(output_dir, name)
        if m and os.path.isdir(path):
            out.append((int(m.group(1)), path, os.path.isfile(os.path.join(path, MARKER))))
    return sorted(out)


def rotate(output_dir: str, keep: int) -> None:
    complete = [(step, path) for step, path, ok in checkpoint_dirs(output_dir) if ok]
    if not complete:
        return
    newest = complete[-1][0]
    keep_steps = {step for step, _ in complete[-keep:]}
    for step, path, _ok in checkpoint_dirs(output_dir):
        # Anything older than the newest complete one is either rotated out or a half-written leftover.
        if step < newest and step not in keep_steps:
            shutil.rmtree(path, ignore_errors=True)


class CheckpointCallback(TrainerCallback):
    """Marks each checkpoint complete, rotates old ones, and times the writes."""

    def __init__(self, keep: int, resumed_from: str | None) -> None:
        self.keep = keep
        self.last_checkpoint = resumed_from
        self.last_save_seconds: float | None = None
        self.save_seconds: list[float] = []
        self._busy_until = time.perf_counter()

    # The Trainer logs, evaluates, then saves after on_step_end: the save starts when those end.
    def on_step_end(self, args, state, control, **kwargs):
        self._busy_until = time.perf_counter()

    def on_log(self, args, state, control, **kwargs):
        self._busy_until = time.perf_counter()

    def on_evaluate(self, args, state, control, **kwargs):
        self._busy_until = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        mark_complete(path, state.global_step)
        rotate(args.output_dir, self.keep)
        self.last_save_seconds = time.perf_counter() - self._busy_until
        self.save_seconds.append(self.last_save_seconds)
        self.last_checkpoint = path
