"""Die with the parent: when the process that started us goes away, stdin reaches end-of-file.

A worker killed with SIGKILL cannot kill its children; without this, the kernel would keep training
(and writing checkpoints into the directory the next attempt resumes from) as an orphan.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def exit_when_stdin_closes() -> None:
    def watch() -> None:
        try:
            # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader holds its lock,
            # and interpreter shutdown aborts on that lock.
            while os.read(0, 65536):
                pass
        finally:
            print("[train] stdin closed: the parent process is gone, stopping", file=sys.stderr, flush=True)
            if os.getpgrp() == os.getpid():
                os.killpg(os.getpid(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
