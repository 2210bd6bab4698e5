"""The one error type: its kinds are the README's, it survives pickling, and every failure becomes
a row with the right kind (the pipeline tests produce each kind from a real file)."""
from __future__ import annotations

import errno
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from musicnn_beam.transforms.errors import KINDS, RETRIED, TaggingError, read_failure
from musicnn_beam.transforms.extract import check_usable
from musicnn_beam.transforms.features import MelStream
from musicnn_beam.transforms.records import ErrorRecord, InputFile

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_error_kinds() -> dict[str, str]:
    """kind -> stage, from the README's table of error kinds (rows `| `Kind` | stage | meaning |`)."""
    section = README.read_text().split("### Error kinds", 1)[1].split("\n#", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| (\w+) \|", section, re.M))


def test_the_readme_documents_every_kind_and_only_those():
    assert readme_error_kinds() == {kind: stage for kind, (stage, _) in KINDS.items()}


def test_an_error_crosses_process_boundaries():
    error = TaggingError("Truncated", "decoded 5.851 s of a declared 20.000 s")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is TaggingError and (again.kind, again.message) == ("Truncated", error.message)


def test_an_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown error kind 'Trunkated'"):
        TaggingError("Trunkated", "typo")


def test_error_rows_carry_the_kind_and_its_stage():
    row = ErrorRecord.of(InputFile("/music/a.mp3", "T1"), TaggingError("Corrupt", "bad header")).row()
    assert row == {"uri": "/music/a.mp3", "track_id": "T1", "stage": "decode", "error": "Corrupt",
                   "message": "bad header", "version": None}


@pytest.mark.parametrize("exc,kind,message", [
    (FileNotFoundError(2, "No such file or directory", "/music/a.mp3"), "NotFound", "no such file or directory (ENOENT)"),
    (PermissionError(13, "Permission denied", "/music/a.mp3"), "PermissionDenied", "permission denied (EACCES)"),
    (PermissionError("Access Denied"), "PermissionDenied", "permission denied (EACCES): Access Denied"),  # s3fs's
    (IsADirectoryError(21, "Is a directory"), "NotAFile", "is a directory (EISDIR)"),
    (OSError(errno.ELOOP, "Too many levels of symbolic links", "/music/a.mp3"), "NotAFile",
     "too many levels of symbolic links (ELOOP)"),
    (ConnectionResetError(104, "Connection reset by peer"), "ReadFailed", "connection reset by peer (ECONNRESET)"),
    (OSError(errno.EIO, "An error occurred (SlowDown)"), "ReadFailed", "input/output error (EIO): An error occurred (SlowDown)"),
    (TimeoutError("read timed out"), "ReadFailed", "TimeoutError: read timed out"),
    (RuntimeError("botocore said no"), "ReadFailed", "RuntimeError: botocore said no"),
])
def test_read_failures_are_typed_and_said_in_words_with_the_code(exc, kind, message):
    error = read_failure(exc)
    assert (error.kind, error.stage, error.message) == (kind, "read", message)


def test_a_file_the_run_may_not_read_is_tried_again_a_symlink_loop_waits_for_a_change():
    """chmod changes neither a file's size nor its mtime: PermissionDenied must not wait for a change."""
    assert read_failure(PermissionError(errno.EACCES, "Permission denied")).kind in RETRIED
    assert read_failure(OSError(errno.ELOOP, "Too many levels of symbolic links")).kind not in RETRIED


def _streamed(samples: np.ndarray, recipe) -> MelStream:
    stream = MelStream(recipe)
    stream.push(samples.astype(np.float32))
    return stream


@pytest.mark.parametrize("samples,kind", [
    (np.full(7999, 0.5), "TooShort"),  # 0.4999 s at 16 kHz
    (np.full(8000, 9e-5), "Silent"),  # under 1e-4, -80 dBFS
    (np.r_[np.full(8000, 0.5), np.nan], "Corrupt"),  # a damaged float wav
    (np.r_[np.full(8000, 0.5), -np.inf, 0.1], "Corrupt"),
])
def test_unusable_audio(samples, kind, recipe):
    with pytest.raises(TaggingError) as caught:
        check_usable(_streamed(samples, recipe))
    assert caught.value.kind == kind


def test_half_a_second_above_silence_is_usable(recipe):
    check_usable(_streamed(np.full(8000, 1.1e-4), recipe))
