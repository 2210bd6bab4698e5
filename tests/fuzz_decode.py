"""Coverage-guided fuzzing of decoding (`make fuzz`): atheris (libFuzzer for Python) mutates the
seed files of tests/fuzzing.py, and every input must end as samples or a TaggingError.

    .venv/bin/python -m tests.fuzz_decode -max_total_time=600 -artifact_prefix=tests/fuzz_findings/ build/fuzz-corpus

Anything else (an unexpected exception, a crash in FFmpeg, a hang past -timeout, memory past
-rss_limit_mb) stops the run and leaves the input in tests/fuzz_findings/: fix the cause, keep the
file (tests/test_fuzz.py decodes every file there in each `make test`).
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["musicnn_beam"]):  # atheris matches top-level packages only
    from musicnn_beam.transforms.audio import decode_chunks
    from musicnn_beam.transforms.errors import TaggingError


def decode_one(data: bytes) -> None:
    try:
        for _ in decode_chunks(io.BytesIO(data), 16000, max_duration_s=600):
            pass
    except TaggingError:
        pass


def main() -> None:
    from tests.fuzzing import FINDINGS, write_seeds

    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    for folder in corpus:
        if not any(Path(folder).glob("*")):
            write_seeds(Path(folder))
            for finding in FINDINGS.glob("*"):
                (Path(folder) / finding.name).write_bytes(finding.read_bytes())
    atheris.Setup(sys.argv, decode_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
