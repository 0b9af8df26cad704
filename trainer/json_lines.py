"""stdout carries only the kernel's JSON lines; everything else (libraries' prints included) goes to stderr.

The parent process parses stdout line by line, so a stray print from a library must never land there:
the real stdout is kept on a private descriptor and file descriptor 1 is pointed at stderr.
"""

from __future__ import annotations

import json
import math
import os
import sys

_channel = None
_log = None


def reserve_stdout() -> None:
    global _channel
    if _channel is not None:
        return
    sys.stdout.flush()
    _channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def also_log_to(path: str) -> None:
    """Append every line to a file too: a record of all attempts that survives a crash of the parent."""
    global _log
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _log = open(path, "a", buffering=1, encoding="utf-8")


def _clean(v: object) -> object:
    # JSON has no NaN/Infinity; a diverged loss is reported as null rather than breaking the parser.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def emit(line: dict) -> None:
    text = json.dumps(_clean(line), ensure_ascii=False, separators=(",", ":")) + "\n"
    out = _channel if _channel is not None else sys.stdout
    out.write(text)
    out.flush()
    if _log is not None:
        _log.write(text)
