"""The one error type: its kinds are the README's, it survives pickling, and every failure becomes
a row with the right kind (the pipeline tests produce each kind from a real file)."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from transforms.audio import DecodedAudio
from transforms.errors import KINDS, TaggingError
from transforms.extract import check_usable
from transforms.records import DECODE, READ, ErrorRecord, InputFile

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


def test_error_rows_carry_the_kind_or_the_exception_type():
    source = InputFile("/music/a.mp3", "T1")
    row = ErrorRecord.from_exception(source, DECODE, TaggingError("Corrupt", "bad header")).row()
    assert row == {"uri": "/music/a.mp3", "track_id": "T1", "stage": "decode", "error": "Corrupt",
                   "message": "bad header"}
    row = ErrorRecord.from_exception(source, READ, FileNotFoundError("no such file")).row()
    assert (row["stage"], row["error"], row["message"]) == ("read", "FileNotFoundError", "no such file")


def _audio(samples: np.ndarray) -> DecodedAudio:
    return DecodedAudio(samples=samples.astype(np.float32), source_sample_rate=44100, channels=2,
                        duration_s=len(samples) / 16000)


@pytest.mark.parametrize("n_samples,peak,kind", [
    (7999, 0.5, "TooShort"),  # 0.4999 s at 16 kHz
    (8000, 9e-5, "Silent"),  # under 1e-4, -80 dBFS
])
def test_unusable_audio(n_samples, peak, kind):
    samples = np.full(n_samples, peak)
    with pytest.raises(TaggingError) as caught:
        check_usable(_audio(samples), 16000)
    assert caught.value.kind == kind


def test_half_a_second_above_silence_is_usable():
    check_usable(_audio(np.full(8000, 1.1e-4)), 16000)
