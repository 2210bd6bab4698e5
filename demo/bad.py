"""Inputs a catalogue really contains and the tagger must survive: empty, cut, mislabelled, silent, short."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from demo.encode import write_audio
from demo.synth import synth_music

__all__ = ["write_bad_inputs"]


def write_bad_inputs(directory: str | os.PathLike) -> dict[str, str]:
    """Write the bad-input set into `directory` (created if needed); returns name -> path.

    empty.mp3, truncated.flac, not_audio.mp3 and random.ogg must raise AudioError when decoded;
    silent.wav and short_2s.wav decode fine (silence and shortness are judged downstream).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}

    def path(name: str) -> Path:
        paths[name] = str(out / name)
        return out / name

    path("empty.mp3").write_bytes(b"")
    whole = out / ".truncated_source.flac"
    write_audio(whole, synth_music(101, 20.0, 44100, 2), 44100, "flac")
    data = whole.read_bytes()
    whole.unlink()
    path("truncated.flac").write_bytes(data[: int(len(data) * 0.3)])  # STREAMINFO still says 20 s
    path("not_audio.mp3").write_text("This is a text file with an .mp3 name, not audio.\n" * 40)
    write_audio(path("silent.wav"), np.zeros((1, 10 * 44100), dtype=np.float32), 44100, "wav16")
    write_audio(path("short_2s.wav"), synth_music(102, 2.0, 16000, 1), 16000, "wav16")
    path("random.ogg").write_bytes(np.random.default_rng(103).bytes(64 * 1024))
    return paths
