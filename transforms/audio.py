"""Decode any catalogue audio file to the model's input: mono float32 at the model's sample rate.

The recipe reproduces musicnn's `librosa.load(path, sr=16000)`: samples as float at the file's
own rate, the plain mean of the channels, then soxr 'HQ' (librosa's 'soxr_hq') to the target rate,
cut or zero-padded to ceil(n * target / rate) as librosa does. FFmpeg (through PyAV) does the decoding
because it reads every format a catalogue holds, several times faster than libsndfile; libsndfile
(the original's decoder) reads what FFmpeg refuses. transforms.probe judges what the file is and
claims.

decode_chunks streams: frames are decoded, averaged and resampled a block at a time, so its memory
is bounded by a block of source frames whatever the file's length or its header's claims.
decode_audio joins the stream into the whole track.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Generator, Iterator, Optional

import av
import numpy as np
import soxr

from musicnn_beam.transforms.errors import TaggingError
from musicnn_beam.transforms.probe import (
    AudioSource, audio_signature, audio_stream, check_complete, check_truncation, checked_format, declared_duration_s,
    error_text, mp4_sample_limit, open_failure, read_head, reject_empty, stream_format)

__all__ = ["AUDIO_EXTENSIONS", "AudioInfo", "DecodedAudio", "decode_audio", "decode_chunks"]

AUDIO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp3", ".mp2", ".flac", ".wav", ".wave", ".ogg", ".oga", ".opus", ".spx",
    ".m4a", ".m4b", ".aac", ".mp4", ".alac", ".aif", ".aiff", ".aifc", ".caf",
    ".wma", ".asf", ".webm", ".mka", ".mkv", ".ape", ".wv", ".au", ".snd", ".amr", ".ac3", ".dts",
})

# Soxr 'HQ' is what librosa calls 'soxr_hq', musicnn's (librosa >= 0.10 default) resampler.
_SOXR_QUALITY = "HQ"

# Frames are averaged and resampled in blocks of about 1.5 s at 44.1 kHz: per-frame numpy and soxr
# calls (an mp3 frame is 1152 samples) cost more than the decoding, and they hold the GIL.
_BLOCK_SAMPLES = 65536


@dataclass(frozen=True)
class AudioInfo:
    """What decoding learnt about a source."""

    source_sample_rate: int
    channels: int
    duration_s: float  # decoded source duration in seconds


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # (n,) float32, mono, at the sample rate asked for
    source_sample_rate: int
    channels: int
    duration_s: float  # decoded source duration in seconds


def decode_chunks(source: AudioSource, target_sample_rate: int,
                  max_duration_s: float | None = None) -> Generator[np.ndarray, None, AudioInfo]:
    """Decode, downmix (channel mean) and resample (soxr HQ) one file as a stream of (k,) float32
    mono chunks at target_sample_rate; the generator returns the source's AudioInfo.

    The chunks joined are what librosa.load gives: n_out = ceil(n_in * target / rate).
    source: a local path (str/PathLike) or a binary file-like object (e.g. an fsspec file opened 'rb').
    Raises TaggingError for files that cannot be tagged; TooLong past max_duration_s of source audio
    (decoding stops there).
    """
    reject_empty(source)
    try:
        container = av.open(_av_source(source), mode="r", metadata_errors="replace")
    except MemoryError:
        raise  # FFmpeg ran out of memory (av.error.MemoryError is one): not a verdict on the file's format
    except av.FFmpegError as error:
        sound = _open_with_libsndfile(source)
        if sound is None:
            raise open_failure(source, error) from error
        with sound:
            rate, channels = checked_format(int(sound.samplerate), int(sound.channels))
            stated_s = sound.frames / rate if sound.frames > 0 else None
            return (yield from _resampled(_libsndfile_mono_chunks(sound), rate, channels, stated_s,
                                          target_sample_rate, max_duration_s))
    with container:
        stream = audio_stream(container)
        rate, channels = stream_format(stream)
        declared_s = declared_duration_s(source, container, stream)
        check_complete(source, container.format.name, rate)
        mono = _at_most(_mono_chunks(source, container, stream, rate), mp4_sample_limit(container, stream, rate))
        return (yield from _resampled(mono, rate, channels, declared_s, target_sample_rate, max_duration_s))


def _resampled(mono_chunks: Iterator[np.ndarray], rate: int, channels: int, declared_s: Optional[float],
               target_sample_rate: int, max_duration_s: Optional[float]) -> Generator[np.ndarray, None, AudioInfo]:
    """The decode loop, whichever library decodes: (n,) float32 mono chunks at the source's `rate` ->
    chunks at target_sample_rate; TooLong past max_duration_s, EmptyAudio for none, Truncated when
    shorter than declared_s. Returns the source's AudioInfo."""
    max_samples = None if max_duration_s is None else int(max_duration_s * rate)
    resampler = _MonoResampler(rate, target_sample_rate)
    n_in = 0
    for mono in mono_chunks:
        n_in += mono.shape[0]
        if max_samples is not None and n_in > max_samples:
            raise TaggingError("TooLong", f"longer than the {max_duration_s:g} s limit (--max-duration)")
        yield from resampler.push(mono)
    if n_in == 0:
        raise TaggingError("EmptyAudio", "the audio stream decoded to 0 samples")
    decoded_s = n_in / rate
    check_truncation(declared_s, decoded_s)
    yield from resampler.finish(n_in)
    return AudioInfo(source_sample_rate=rate, channels=channels, duration_s=decoded_s)


def _at_most(mono_chunks: Iterator[np.ndarray], limit: Optional[int]) -> Iterator[np.ndarray]:
    """The chunks cut after `limit` samples in all (None: uncut)."""
    n = 0
    for mono in mono_chunks:
        if limit is not None and n + mono.shape[0] > limit:
            mono = mono[: max(0, limit - n)]
        n += mono.shape[0]
        yield mono


def decode_audio(source: AudioSource, target_sample_rate: int, max_duration_s: float | None = None) -> DecodedAudio:
    """decode_chunks, joined: the whole track's (n,) float32 mono samples at target_sample_rate."""
    chunks: list[np.ndarray] = []
    decoding = decode_chunks(source, target_sample_rate, max_duration_s)
    while True:
        try:
            chunks.append(next(decoding))
        except StopIteration as done:
            info: AudioInfo = done.value
            break
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return DecodedAudio(samples=samples, source_sample_rate=info.source_sample_rate, channels=info.channels,
                        duration_s=info.duration_s)


def _av_source(source: AudioSource) -> str | BinaryIO:
    return source if hasattr(source, "read") else os.fspath(source)


# --- libsndfile, where FFmpeg cannot open the file -------------------------------------------------

def _open_with_libsndfile(source: AudioSource):
    """A soundfile.SoundFile when libsndfile (the original's decoder) reads what FFmpeg could not, else None."""
    import soundfile

    if hasattr(source, "read"):
        if not source.seekable():
            return None
        source.seek(0)
    try:
        return soundfile.SoundFile(source if hasattr(source, "read") else os.fspath(source))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None


def _libsndfile_mono_chunks(sound) -> Iterator[np.ndarray]:
    """(n,) float32 chunks of an open soundfile.SoundFile at its rate, channels averaged, in blocks of
    _BLOCK_SAMPLES; Corrupt where libsndfile fails mid-file."""
    import soundfile

    blocks = sound.blocks(_BLOCK_SAMPLES, dtype="float32", always_2d=True)
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise TaggingError("Corrupt", f"libsndfile could not read it ({error_text(error)})") from error
        yield _channel_mean(np.ascontiguousarray(block.T))


# --- FFmpeg -----------------------------------------------------------------------------------

def _mono_chunks(
    source: AudioSource, container: av.container.InputContainer, stream: av.audio.stream.AudioStream, rate: int,
) -> Iterator[np.ndarray]:
    """Yield (n,) float32 chunks at `rate`, channels averaged, in blocks of about _BLOCK_SAMPLES; a
    block ends early where the channel count changes mid-stream."""
    block: list[np.ndarray] = []
    block_samples = 0
    for planar in _planar_frames(source, container, stream, rate):
        if block and (planar.shape[0] != block[0].shape[0] or block_samples >= _BLOCK_SAMPLES):
            yield _channel_mean(np.concatenate(block, axis=1))
            block, block_samples = [], 0
        block.append(planar)
        block_samples += planar.shape[1]
    if block:
        yield _channel_mean(np.concatenate(block, axis=1))


def _planar_frames(
    source: AudioSource, container: av.container.InputContainer, stream: av.audio.stream.AudioStream, rate: int,
) -> Iterator[np.ndarray]:
    """Yield each decoded frame as (channels, n) planar float32 at `rate` (a stream whose rate
    changes mid-file is resampled to its first rate).

    A decode error before any audio means the data is not (this) audio; after some audio it means
    corruption, unless it hits the last packet: then the data simply ends early, and the truncation
    check on the declared duration decides.
    """
    converters: dict[tuple[str, str, int], av.AudioResampler] = {}
    produced = False
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except MemoryError:
            raise
        except av.FFmpegError:
            break  # a demuxer error at the end of a cut file: stop, let the duration check judge
        try:
            frames = packet.decode()
        except MemoryError:
            raise
        except av.FFmpegError as error:
            if not produced:
                head_kind = "Corrupt" if audio_signature(read_head(source)) else "NotAudio"
                raise TaggingError(head_kind, f"no audio could be decoded ({error_text(error)})") from error
            if _more_packets(packets):
                raise TaggingError("Corrupt", f"decode error mid-stream ({error_text(error)})") from error
            break
        for frame in frames:
            # What decodes before time 0 is the start trim the container asks for (Ogg granule
            # positions, priming): libsndfile drops it, and the stream's stated length excludes it.
            skip = round(-frame.pts * frame.time_base * rate) if frame.pts is not None and frame.pts < 0 else 0
            for planar in _to_fltp(frame, rate, converters):
                produced = True
                if skip:
                    planar, skip = planar[:, skip:], max(skip - planar.shape[1], 0)
                if planar.shape[1]:
                    yield planar
    for converter in converters.values():
        yield from (out.to_ndarray() for out in converter.resample(None) or ())


def _more_packets(packets: Iterator[av.Packet]) -> bool:
    """Whether the demuxer still holds data after a failed packet (the flush packet has size 0)."""
    try:
        return any(packet.size > 0 for packet in packets)
    except av.FFmpegError:
        return False


def _to_fltp(
    frame: av.AudioFrame, rate: int, converters: dict[tuple[str, str, int], av.AudioResampler],
) -> list[np.ndarray]:
    """(channels, n) float32 arrays for one frame, in the same layout (never downmixed) at `rate`."""
    if frame.format.name == "fltp" and frame.sample_rate == rate:
        return [frame.to_ndarray()]
    key = (frame.format.name, frame.layout.name, frame.sample_rate)
    converter = converters.get(key)
    if converter is None:
        # Same layout and (normally) the same rate: swresample only converts the sample format.
        # Never let it change the layout: its mono downmix is 0.707 * (L + R), not the mean.
        converter = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
        converters[key] = converter
    return [out.to_ndarray() for out in converter.resample(frame)]


# --- downmix and resampling ------------------------------------------------------------------

def _channel_mean(planar: np.ndarray) -> np.ndarray:
    """(channels, n) float32 -> (n,) float32, the plain mean librosa.to_mono takes."""
    if planar.shape[0] == 1:
        return planar[0]
    return np.mean(planar, axis=0)


class _MonoResampler:
    """Streams (n,) float32 chunks through soxr HQ, yielding (m,) float32 output chunks.

    Streaming output equals soxr.resample on the whole signal to within 1e-6 (the tests check 44.1
    and 48 kHz), so the stream reproduces librosa's one-shot call without holding the signal. The
    last HOLD_BACK output samples are kept until finish(), which cuts or zero-pads the total to
    librosa's length.
    """

    HOLD_BACK = 4096

    def __init__(self, in_rate: int, out_rate: int):
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(
            in_rate, out_rate, 1, dtype="float32", quality=_SOXR_QUALITY,
        )
        self._held = np.zeros(0, dtype=np.float32)
        self._emitted = 0

    def push(self, mono: np.ndarray) -> Iterator[np.ndarray]:
        if mono.shape[0] == 0:
            return
        out = mono if self._stream is None else self._stream.resample_chunk(np.ascontiguousarray(mono), last=False)
        held = np.concatenate([self._held, out]) if self._held.shape[0] else out
        ready = held.shape[0] - self.HOLD_BACK
        if ready > 0:
            self._emitted += ready
            yield held[:ready]
            held = held[ready:]
        self._held = np.array(held, dtype=np.float32)  # a copy: the yielded block may be kept by the caller

    def finish(self, n_in: int) -> Iterator[np.ndarray]:
        """The rest, so that the total is ceil(n_in * out_rate / in_rate), like librosa.resample(fix=True)."""
        tail = self._held
        if self._stream is not None:
            tail = np.concatenate([tail, self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)])
        expected = int(np.ceil(n_in * (float(self.out_rate) / self.in_rate)))
        rest = max(expected - self._emitted, 0)
        tail = tail[:rest]
        if tail.shape[0] < rest:
            tail = np.concatenate([tail, np.zeros(rest - tail.shape[0], dtype=np.float32)])
        if tail.shape[0]:
            yield tail
