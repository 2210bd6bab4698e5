"""Inputs a catalogue really contains and the tagger must survive: empty, cut, damaged, mislabelled,
video without sound, soundless, silent, short: one file for every decode and features error kind."""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path

import av
import numpy as np

from musicnn_beam.demo.encode import write_audio
from musicnn_beam.demo.synth import synth_music

__all__ = ["write_bad_inputs"]


def write_bad_inputs(directory: str | os.PathLike) -> dict[str, str]:
    """Write the bad-input set into `directory` (created if needed); returns name -> path.

    Decoding raises TaggingError for empty.mp3 (EmptyFile), truncated.flac (Truncated),
    corrupt.mp3 (Corrupt), not_audio.mp3 and random.ogg (NotAudio), video_only.mp4 (NoAudioStream)
    no_samples.wav (EmptyAudio) and rate_1hz.wav (UnsupportedFormat); silent.wav (Silent),
    too_short.wav (TooShort) and nan.wav (Corrupt: a NaN sample) decode and are judged by the
    features stage; short_2s.wav is under one patch but is tagged (repeat-padded).
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
    write_audio(path("too_short.wav"), synth_music(104, 0.3, 16000, 1), 16000, "wav16")
    mp3 = out / ".corrupt_source.mp3"
    write_audio(mp3, synth_music(105, 3.0, 44100, 2), 44100, "mp3")
    path("corrupt.mp3").write_bytes(mp3.read_bytes()[:200])  # the LAME header, then nothing decodable
    mp3.unlink()
    with wave.open(str(path("no_samples.wav")), "wb") as header_only:  # a valid header and 0 frames
        header_only.setnchannels(1)
        header_only.setsampwidth(2)
        header_only.setframerate(16000)
    _write_video_only(path("video_only.mp4"))
    wav = bytearray((out / "short_2s.wav").read_bytes())
    struct.pack_into("<I", wav, wav.find(b"fmt ") + 12, 1)  # the header says 1 Hz: 18 h for 64 KB at 16 kHz
    path("rate_1hz.wav").write_bytes(wav)
    damaged = synth_music(106, 2.0, 16000, 1)
    damaged[0, 8000] = np.nan  # float wav samples are taken as they are
    write_audio(path("nan.wav"), damaged, 16000, "wavf32")
    return paths


def _write_video_only(path: Path) -> None:
    """An mp4 holding five black video frames and no audio."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
