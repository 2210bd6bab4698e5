"""Decoder processes that fail on demand, as a hostile file can make FFmpeg fail: a file whose name
starts "decoder-crash" kills its decoder (SIGSEGV), "decoder-hang" hangs it, "decoder-oom" makes it
allocate past its memory limit. Other files decode as ever.

use_faulty_decoders() makes this process's decoder pools start such children; cli_command() is the
CLI run that way. Run as a script, this file is such a child (decoder_child.main, wrapped).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from musicnn_beam.transforms import decoder_child, decoders

ROOT = Path(__file__).resolve().parent.parent


def use_faulty_decoders(monkeypatch=None) -> None:
    """Decoder pools in this process start faulty children from now on (until monkeypatch undoes it)."""
    command = (sys.executable, str(Path(__file__).resolve()))
    if monkeypatch is None:
        decoders.CHILD_COMMAND = command
    else:
        monkeypatch.setattr(decoders, "CHILD_COMMAND", command)


def cli_command(*args: str) -> list[str]:
    """`python -m musicnn_beam.pipeline ARGS`, with faulty decoders."""
    run = ("import sys; sys.path.insert(0, {root!r}); from tests.decoder_faults import use_faulty_decoders; "
           "use_faulty_decoders(); from musicnn_beam.pipeline.cli import console_main; console_main()")
    return [sys.executable, "-c", run.format(root=str(ROOT)), *args]


def _fail_by_name(decode_file):
    def decode_or_fail(request, emit):
        name = request.uri.rsplit("/", 1)[-1]
        if name.startswith("decoder-crash"):
            os.kill(os.getpid(), signal.SIGSEGV)
        elif name.startswith("decoder-hang"):
            time.sleep(3600)
        elif name.startswith("decoder-oom"):
            np.empty(1 << 36, dtype=np.uint8)  # 64 GiB, as a hostile header once asked for: past the limit
        return decode_file(request, emit)
    return decode_or_fail


if __name__ == "__main__":
    decoder_child.decode_file = _fail_by_name(decoder_child.decode_file)
    decoder_child.main(sys.argv[1:])
