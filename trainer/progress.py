"""One JSON line per logging step, for the parent process (see json_lines.py for the channel).

{"type":"progress","step","total","epoch","loss","lr","samplesPerSecond","lastCheckpoint"}
plus "checkpoint" lines when one is complete and "eval" lines with dev metrics.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

from checkpoints import CheckpointCallback
from json_lines import emit


class JsonProgressCallback(TrainerCallback):
    def __init__(self, samples_per_step: int, checkpoints: CheckpointCallback) -> None:
        self.samples_per_step = samples_per_step
        self.checkpoints = checkpoints
        self.first_step: int | None = None
        self.steps_executed = 0
        self._last_step = 0
        self._last_time = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step = state.global_step
        self._last_step = state.global_step
        self._last_time = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps_executed += 1
        # The Trainer logs only every logging_steps; the last step is always reported.
        if state.global_step >= state.max_steps:
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return
        now = time.perf_counter()
        steps = state.global_step - self._last_step
        elapsed = now - self._last_time
        self._last_step, self._last_time = state.global_step, now
        emit(
            {
                "type": "progress",
                "step": state.global_step,
                "total": state.max_steps,
                "epoch": round(state.epoch or 0.0, 4),
                "loss": logs["loss"],
                "lr": logs.get("learning_rate"),
                "samplesPerSecond": round(steps * self.samples_per_step / elapsed, 2) if elapsed > 0 else None,
                "lastCheckpoint": self.checkpoints.last_checkpoint,
            }
        )

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        emit({"type": "eval", "step": state.global_step, "metrics": dict(metrics or {})})

    def on_save(self, args, state, control, **kwargs):
        # Runs after CheckpointCallback.on_save (registered first), so the checkpoint is marked.
        emit(
            {
                "type": "checkpoint",
                "step": state.global_step,
                "total": state.max_steps,
                "path": self.checkpoints.last_checkpoint,
                "seconds": round(self.checkpoints.last_save_seconds or 0.0, 3),
            }
        )
