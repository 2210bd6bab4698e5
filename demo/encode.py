"""Write synthetic PCM to real audio files with PyAV (the FFmpeg in the `av` wheel).

Used by the demo catalogue and by tests: every format a catalogue holds is produced by the same
FFmpeg that later decodes it, so no system tools are needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import soxr

__all__ = ["CODECS", "write_audio"]


@dataclass(frozen=True)
class _Codec:
    container: str  # FFmpeg muxer name
    encoder: str  # FFmpeg encoder name
    bit_rate: int | None = None
    rates: tuple[int, ...] | None = None  # sample rates the encoder accepts (None: any)
    options: dict[str, str] | None = None


# This wheel (av 18.1.0, FFmpeg 8.1) has libmp3lame, flac, pcm_*, the native `vorbis` encoder
# (experimental, so it needs strict=-2; libvorbis is absent), libopus and the native `aac`.
CODECS: dict[str, _Codec] = {
    "mp3": _Codec("mp3", "libmp3lame", bit_rate=192_000),
    "flac": _Codec("flac", "flac"),
    "wav16": _Codec("wav", "pcm_s16le"),
    "wav24": _Codec("wav", "pcm_s24le"),
    "wavf32": _Codec("wav", "pcm_f32le"),
    "ogg": _Codec("ogg", "vorbis", options={"strict": "-2"}),
    "opus": _Codec("ogg", "libopus", bit_rate=128_000, rates=(48000, 24000, 16000, 12000, 8000)),
    "m4a": _Codec("mp4", "aac", bit_rate=192_000),
}

# FFmpeg's default layout names for a channel count; wav writes WAVE_FORMAT_EXTENSIBLE masks from them.
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}

_BLOCK = 4096  # samples per frame handed to the encoder; PyAV re-frames to the codec's frame_size


def write_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, codec: str) -> None:
    """Encode `samples` ((channels, n) float32 in [-1, 1]) at `sample_rate` into `path` as `codec`.

    codec is one of CODECS: mp3, flac, wav16, wav24, wavf32, ogg (vorbis), opus, m4a (aac in mp4).
    Opus only takes 48/24/16/12/8 kHz: other rates are resampled to 48 kHz (soxr HQ) first, as a
    real encoder front-end would.
    """
    spec = CODECS[codec]
    pcm = np.ascontiguousarray(np.clip(np.atleast_2d(samples), -1.0, 1.0), dtype=np.float32)
    channels = pcm.shape[0]
    if spec.rates is not None and sample_rate not in spec.rates:
        pcm = _resample(pcm, sample_rate, 48000)
        sample_rate = 48000
    layout = _LAYOUTS.get(channels)
    if layout is None:
        raise ValueError(f"unsupported channel count {channels}")
    with av.open(os.fspath(path), mode="w", format=spec.container) as container:
        stream = container.add_stream(spec.encoder, rate=sample_rate, options=spec.options or {})
        stream.layout = layout
        if spec.bit_rate:
            stream.bit_rate = spec.bit_rate
        for start in range(0, pcm.shape[1], _BLOCK):
            frame = _fltp_frame(pcm[:, start : start + _BLOCK], sample_rate, layout, pts=start)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _fltp_frame(block: np.ndarray, sample_rate: int, layout: str, pts: int) -> av.AudioFrame:
    """Planar float frame from a (channels, n) float32 block."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout=layout)
    frame.sample_rate = sample_rate
    frame.pts = pts
    frame.time_base = Fraction(1, sample_rate)
    return frame


def _resample(pcm: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """(channels, n) float32 -> (channels, m) float32 at out_rate, soxr HQ per channel."""
    return np.stack([soxr.resample(ch, in_rate, out_rate, quality="HQ") for ch in pcm]).astype(np.float32)
