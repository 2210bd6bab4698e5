"""TensorFlow imported without its start-up notes on the console.

TensorFlow's C++ logging writes its import-time notes ("oneDNN custom operations are on", "Could
not find cuda drivers") to file descriptor 2 directly, past TF_CPP_MIN_LOG_LEVEL and Python's
sys.stderr. The launcher imports it silenced (pipeline/run.py); worker processes it starts on this
machine inherit QUIET_ENV and import it silenced when this package is first imported.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

QUIET_ENV = "MUSICNN_BEAM_QUIET"


@contextlib.contextmanager
def native_stderr_silenced(silenced: bool = True) -> Iterator[None]:
    """File descriptor 2 goes to /dev/null meanwhile. TensorFlow's C++ logging writes its import-time
    notes ("oneDNN custom operations are on", "Could not find cuda drivers") there directly, past
    TF_CPP_MIN_LOG_LEVEL and Python's sys.stderr. A failed import still raises; Python prints it
    after."""
    if not silenced:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly() -> None:
    """In a process started quiet (QUIET_ENV=1), import TensorFlow now, silenced, unless it is already."""
    if os.environ.get(QUIET_ENV) == "1" and "tensorflow" not in sys.modules:
        with native_stderr_silenced():
            import tensorflow  # noqa: F401
