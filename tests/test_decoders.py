"""The decoder pool itself: children that died while idle are never handed a file; a child reading
without root's override of file permissions types what it may not read."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_audio
from musicnn_beam.store.read import read_table
from musicnn_beam.transforms import decoders
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


@pytest.fixture
def without_root_override(monkeypatch) -> None:
    """Decoder children read files as a user would: root reads every file, so its children run without
    the capabilities that override permissions (setpriv, which only root may run so)."""
    if os.geteuid() != 0:
        return  # a mode-000 file is unreadable already
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's permission override")
    monkeypatch.setattr(decoders, "CHILD_COMMAND", ("setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                                                    sys.executable, "-m", "musicnn_beam.transforms.decoder_child"))


def _outcomes(output: Path) -> tuple[list[str], list[tuple[str, str, str]]]:
    tagged = sorted(Path(u).name for u in read_table(str(output), "tracks").column("uri").to_pylist())
    errors = sorted((Path(r["uri"]).name, r["error"], r["message"]) for r in read_table(str(output), "errors").to_pylist())
    return tagged, errors


@pytest.mark.usefixtures("converted_models", "without_root_override")
def test_a_file_the_run_may_not_read_is_tried_again_a_symlink_loop_waits(tmp_path, wav16k, cli):
    """Case 3 of issue 21: a mode-000 file was EmptyFile (its head read as nothing), a lasting kind, so
    after chmod 644 it was skipped for good (chmod changes neither size nor mtime). A symlink loop was
    ReadFailed, retried every run forever."""
    folder = tmp_path / "in"
    folder.mkdir()
    locked = folder / "locked.wav"
    shutil.copy(wav16k, locked)
    locked.chmod(0)
    os.symlink(folder / "b.wav", folder / "a.wav")
    os.symlink(folder / "a.wav", folder / "b.wav")
    output = tmp_path / "out"

    assert cli("--input", str(folder), "--output", str(output)).returncode == 0
    loops = [("a.wav", "NotAFile", "too many levels of symbolic links (ELOOP)"),
             ("b.wav", "NotAFile", "too many levels of symbolic links (ELOOP)")]
    assert _outcomes(output) == ([], [*loops, ("locked.wav", "PermissionDenied", "permission denied (EACCES)")])

    locked.chmod(0o644)
    again = cli("--input", str(folder), "--output", str(output))
    assert again.returncode == 0 and "3 listed, 2 skipped, 1 tagged" in again.stdout + again.stderr, again
    assert _outcomes(output) == (["locked.wav"], [*loops, ("locked.wav", "PermissionDenied", "permission denied (EACCES)")])
