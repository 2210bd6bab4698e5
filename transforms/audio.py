"""Decode any catalogue audio file to the model's input: mono float32 at the model's sample rate.

The recipe reproduces musicnn's `librosa.load(path, sr=16000)`: samples as float at the file's
own rate, the plain mean of the channels, then soxr 'HQ' (librosa's 'soxr_hq') to the target rate,
cut or zero-padded to ceil(n * target / rate) as librosa does. FFmpeg (through PyAV) does the decoding
because it reads every format a catalogue holds, several times faster than libsndfile.

Memory stays bounded by the output: frames are decoded, averaged and resampled as a stream, and
only the mono result at the target rate (64 KB per audio second at 16 kHz) is kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Union

import av
import numpy as np
import soxr

from transforms.errors import TaggingError

__all__ = ["AUDIO_EXTENSIONS", "AudioSource", "DecodedAudio", "decode_audio"]

AUDIO_EXTENSIONS: frozenset[str] = frozenset({
    ".mp3", ".mp2", ".flac", ".wav", ".wave", ".ogg", ".oga", ".opus", ".spx",
    ".m4a", ".m4b", ".aac", ".mp4", ".alac", ".aif", ".aiff", ".aifc", ".caf",
    ".wma", ".asf", ".webm", ".mka", ".mkv", ".ape", ".wv", ".au", ".snd", ".amr", ".ac3", ".dts",
})

AudioSource = Union[str, "os.PathLike[str]", BinaryIO]

# Soxr 'HQ' is what librosa calls 'soxr_hq', musicnn's (librosa >= 0.10 default) resampler.
_SOXR_QUALITY = "HQ"
# A file counts as truncated when it decodes shorter than it declares by more than this.
_TRUNCATION_MIN_S = 0.5
_TRUNCATION_FRACTION = 0.05
# The mp4 family pads the last AAC frame (up to 1024 samples, 2048 for HE-AAC) past the edit list's
# duration and FFmpeg does not cut it; we cut to the declared duration, never by more than this.
_MP4_MAX_TAIL_PADDING = 2048
# Raw elementary streams have no length header: FFmpeg estimates their duration from the bitrate,
# which is far off for VBR (a 40 s VBR mp3 without a Xing header "declares" 57.7 s).
_ESTIMATED_DURATION_FORMATS = frozenset({"aac", "ac3", "eac3", "dts", "amr", "mpeg", "loas", "latm"})
# Demuxers that open files which are not audio at all (images, text shown as ANSI art).
_NON_MEDIA_FORMATS = frozenset({"image2", "tty", "bin", "ansi", "webp_pipe", "gif", "apng"})


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # (n,) float32, mono, at the sample rate asked for
    source_sample_rate: int
    channels: int
    duration_s: float  # decoded source duration in seconds


def decode_audio(source: AudioSource, target_sample_rate: int) -> DecodedAudio:
    """Decode, downmix (channel mean) and resample (soxr HQ) one file to (n,) float32 mono.

    source: a local path (str/PathLike) or a binary file-like object (e.g. an fsspec file opened 'rb').
    Raises TaggingError for files that cannot be tagged.
    """
    _reject_empty(source)
    try:
        container = av.open(_av_source(source), mode="r", metadata_errors="replace")
    except av.FFmpegError as error:
        raise _open_failure(source, error) from error
    with container:
        stream = _audio_stream(container)
        rate = int(stream.codec_context.sample_rate)
        channels = int(stream.codec_context.channels)
        declared_s = _declared_duration_s(container, stream) if _duration_is_declared(source, container) else None
        limit = _mp4_sample_limit(container, stream, rate)
        resampler = _MonoResampler(rate, target_sample_rate, expected_s=declared_s)
        n_in = 0
        for mono in _mono_chunks(source, container, stream, rate):
            if limit is not None and n_in + mono.shape[0] > limit:
                mono = mono[: max(0, limit - n_in)]
            n_in += mono.shape[0]
            resampler.push(mono)
    if n_in == 0:
        raise TaggingError("EmptyAudio", "the audio stream decoded to 0 samples")
    decoded_s = n_in / rate
    _check_truncation(declared_s, decoded_s)
    samples = resampler.finish(n_in)
    return DecodedAudio(samples=samples, source_sample_rate=rate, channels=channels, duration_s=decoded_s)


# --- opening and classifying failures ---------------------------------------------------------

def _av_source(source: AudioSource) -> str | BinaryIO:
    return source if hasattr(source, "read") else os.fspath(source)


def _reject_empty(source: AudioSource) -> None:
    """EmptyFile for 0-byte paths and for file objects with nothing left to read (when seekable)."""
    if not hasattr(source, "read"):
        if os.path.getsize(os.fspath(source)) == 0:
            raise TaggingError("EmptyFile", "the file is 0 bytes")
        return
    seekable = getattr(source, "seekable", None)
    if seekable is not None and seekable():
        position = source.tell()
        size = source.seek(0, os.SEEK_END)
        source.seek(position)
        if size - position <= 0:
            raise TaggingError("EmptyFile", "the file is 0 bytes")


def _open_failure(source: AudioSource, error: Exception) -> TaggingError:
    """Map a failed av.open: a known audio signature means a damaged file, anything else is not audio."""
    head = _read_head(source)
    if not head:
        return TaggingError("EmptyFile", "the file is 0 bytes")
    container_name = _audio_signature(head)
    if container_name is None:
        return TaggingError("NotAudio", f"no audio format recognised ({_short(error)})")
    if isinstance(error, EOFError):
        return TaggingError("Truncated", f"{container_name} file ends inside its header ({_short(error)})")
    return TaggingError("Corrupt", f"{container_name} header could not be read ({_short(error)})")


def _read_head(source: AudioSource, size: int = 16) -> bytes:
    """The first bytes of the file, leaving a file object where it was; b'' if they cannot be read."""
    try:
        if not hasattr(source, "read"):
            with open(os.fspath(source), "rb") as f:
                return f.read(size)
        if source.seekable():
            position = source.tell()
            source.seek(0)
            head = source.read(size)
            source.seek(position)
            return head
    except (OSError, ValueError, AttributeError):
        pass
    return b""


def _audio_signature(head: bytes) -> str | None:
    """Name of the audio container whose magic bytes start `head`, or None."""
    signatures = {
        b"ID3": "mp3", b"fLaC": "flac", b"OggS": "ogg", b"RIFF": "wav/riff", b"RF64": "wav/rf64",
        b"FORM": "aiff", b"caff": "caf", b"MAC ": "ape", b"wvpk": "wavpack", b"#!AMR": "amr",
        b".snd": "au", b"\x30\x26\xb2\x75": "asf/wma", b"\x1a\x45\xdf\xa3": "matroska/webm",
    }
    for magic, name in signatures.items():
        if head.startswith(magic):
            return name
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "mp4"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return "mpeg audio/adts"
    return None


def _audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    if container.streams.audio:
        return container.streams.audio[0]
    format_name = container.format.name
    if format_name in _NON_MEDIA_FORMATS or format_name.endswith("_pipe"):
        raise TaggingError("NotAudio", f"the file is {format_name}, not audio")
    kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
    raise TaggingError("NoAudioStream", f"{format_name} container has no audio stream (streams: {kinds})")


def _short(error: Exception) -> str:
    # FFmpeg's errors end with the file name FFmpeg was given, a path or '<none>' for a stream: the
    # row already names the input, and the same file must give the same message wherever it is read.
    text = error.strerror if isinstance(error, av.FFmpegError) and error.strerror else str(error)
    return f"{type(error).__name__}: {text}"[:200]


# --- durations ----------------------------------------------------------------------------------

def _declared_duration_s(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    """Duration the file claims (stream header first, then container), in seconds; None if unknown."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _duration_is_declared(source: AudioSource, container: av.container.InputContainer) -> bool:
    """Whether the file states its length, rather than FFmpeg estimating it from the bitrate."""
    format_name = container.format.name
    if format_name in _ESTIMATED_DURATION_FORMATS:
        return False
    if format_name == "mp3":
        return _has_mp3_length_header(source)
    return True


def _has_mp3_length_header(source: AudioSource) -> bool:
    """A Xing/Info (LAME) or VBRI header in the first frame after any ID3v2 tag: frame count is known."""
    try:
        if hasattr(source, "read"):
            if not source.seekable():
                return False
            position = source.tell()
            try:
                return _scan_mp3_header(source)
            finally:
                source.seek(position)
        with open(os.fspath(source), "rb") as f:
            return _scan_mp3_header(f)
    except (OSError, ValueError, AttributeError):
        return False


def _scan_mp3_header(f: BinaryIO) -> bool:
    f.seek(0)
    tag = f.read(10)
    offset = 0
    if len(tag) == 10 and tag.startswith(b"ID3"):
        # ID3v2 size is 4 syncsafe bytes (7 bits each), plus 10 more when a footer is present.
        offset = 10 + ((tag[6] & 0x7F) << 21 | (tag[7] & 0x7F) << 14 | (tag[8] & 0x7F) << 7 | (tag[9] & 0x7F))
        offset += 10 if tag[5] & 0x10 else 0
    f.seek(offset)
    first_frame = f.read(4096)
    return any(marker in first_frame for marker in (b"Xing", b"Info", b"VBRI"))


def _mp4_sample_limit(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, rate: int) -> int | None:
    """Samples the mp4 edit list presents; FFmpeg drops AAC priming itself but not the tail padding."""
    if "mp4" not in container.format.name or stream.duration is None or stream.time_base is None:
        return None
    return int(round(stream.duration * stream.time_base * rate))


def _check_truncation(declared_s: float | None, decoded_s: float) -> None:
    if declared_s is None:
        return
    tolerance = max(_TRUNCATION_MIN_S, _TRUNCATION_FRACTION * declared_s)
    if declared_s - decoded_s > tolerance:
        raise TaggingError(
            "Truncated", f"decoded {decoded_s:.3f} s of a declared {declared_s:.3f} s",
        )


# --- decoding -----------------------------------------------------------------------------------

# Frames are averaged and resampled in blocks of about 1.5 s at 44.1 kHz: per-frame numpy and soxr
# calls (an mp3 frame is 1152 samples) cost more than the decoding, and they hold the GIL.
_BLOCK_SAMPLES = 65536

def _mono_chunks(
    source: AudioSource, container: av.container.InputContainer, stream: av.audio.stream.AudioStream, rate: int,
) -> Iterator[np.ndarray]:
    """Yield (n,) float32 chunks: each decoded frame as planar float at `rate`, channels averaged.

    A decode error before any audio means the data is not (this) audio; after some audio it means
    corruption, unless it hits the last packet: then the data simply ends early, and the truncation
    check on the declared duration decides.
    """
    converters: dict[tuple[str, str, int], av.AudioResampler] = {}
    produced = False
    block: list[np.ndarray] = []
    block_samples = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.FFmpegError:
            break  # a demuxer error at the end of a cut file: stop, let the duration check judge
        try:
            frames = packet.decode()
        except av.FFmpegError as error:
            if not produced:
                head_kind = "Corrupt" if _audio_signature(_read_head(source)) else "NotAudio"
                raise TaggingError(head_kind, f"no audio could be decoded ({_short(error)})") from error
            if _more_packets(packets):
                raise TaggingError("Corrupt", f"decode error mid-stream ({_short(error)})") from error
            break
        for frame in frames:
            for planar in _to_fltp(frame, rate, converters):
                produced = True
                block.append(planar)
                block_samples += planar.shape[1]
                if block_samples >= _BLOCK_SAMPLES:
                    yield _channel_mean(np.concatenate(block, axis=1))
                    block, block_samples = [], 0
    for converter in converters.values():
        block.extend(converter.resample(None) or ())
    if block:
        yield _channel_mean(np.concatenate(block, axis=1))


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


def _channel_mean(planar: np.ndarray) -> np.ndarray:
    """(channels, n) float32 -> (n,) float32, the plain mean librosa.to_mono takes."""
    if planar.shape[0] == 1:
        return planar[0]
    return np.mean(planar, axis=0)


class _MonoResampler:
    """Streams (n,) float32 chunks through soxr HQ into a growing (m,) float32 output.

    Streaming output equals soxr.resample on the whole signal to within 1e-6 (the tests check 44.1
    and 48 kHz), so the stream reproduces librosa's one-shot call without holding the source-rate signal.
    """

    def __init__(self, in_rate: int, out_rate: int, expected_s: float | None):
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(
            in_rate, out_rate, 1, dtype="float32", quality=_SOXR_QUALITY,
        )
        # Sized from the declared duration so a whole file normally needs no regrowth.
        capacity = int((expected_s or 60.0) * out_rate * 1.01) + out_rate
        self._buffer = np.empty(capacity, dtype=np.float32)
        self._size = 0

    def push(self, mono: np.ndarray) -> None:
        if mono.shape[0] == 0:
            return
        if self._stream is None:
            self._append(mono)
        else:
            self._append(self._stream.resample_chunk(np.ascontiguousarray(mono), last=False))

    def finish(self, n_in: int) -> np.ndarray:
        """The (m,) float32 result, m = ceil(n_in * out_rate / in_rate) like librosa.resample(fix=True)."""
        if self._stream is not None:
            self._append(self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        expected = int(np.ceil(n_in * (float(self.out_rate) / self.in_rate)))
        if self._size < expected:
            self._append(np.zeros(expected - self._size, dtype=np.float32))
        out = self._buffer[:expected]
        # Do not pin a much larger buffer behind a small view.
        return out.copy() if self._buffer.shape[0] > 1.25 * expected + self.out_rate else out

    def _append(self, chunk: np.ndarray) -> None:
        end = self._size + chunk.shape[0]
        if end > self._buffer.shape[0]:
            grown = np.empty(max(end, 2 * self._buffer.shape[0]), dtype=np.float32)
            grown[: self._size] = self._buffer[: self._size]
            self._buffer = grown
        self._buffer[self._size:end] = chunk
        self._size = end
