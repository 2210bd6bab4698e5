"""The decoder pool itself: children that died while idle are never handed a file."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import make_audio
from musicnn_beam.transforms.decoder_pipe import DecodeRequest
from musicnn_beam.transforms.decoders import DecoderPool

pytestmark = pytest.mark.integration  # decoder processes


def test_a_child_that_died_idle_is_replaced_not_used(tmp_path):
    """A child dies with the thread that started it (PR_SET_PDEATHSIG), e.g. a thread pool's at
    teardown: the next file must go to a live child, not fail as DecoderCrashed."""
    path = make_audio(tmp_path, "a.wav", 1, 2.0, 16000, 1, "wav16")
    pool = DecoderPool(1).start(wait=True)
    try:
        (idle,) = list(pool._idle.queue)
        idle.process.kill()
        idle.process.wait()
        chunks: list[np.ndarray] = []
        info = pool.decode(DecodeRequest(path, 16000, None), chunks.append)
        assert info.duration_s == 2.0 and sum(len(c) for c in chunks) == 32000
    finally:
        pool.close()
