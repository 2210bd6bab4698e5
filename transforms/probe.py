"""What an audio file is and what it claims, read from its bytes and headers: the checks that turn a
file that cannot be tagged into a TaggingError of the right kind, before and after decoding.

A file's header states its format and length; these are claims, not sizes (a 64 KB wav whose header
says 1 Hz would be 18 hours at 16 kHz), so each is checked against what audio has and what the file
holds. transforms.audio decodes; this module judges.
"""
from __future__ import annotations

import contextlib
import os
from typing import BinaryIO, Iterator, Optional, Union

import av

from musicnn_beam.transforms.errors import TaggingError, read_failure

AudioSource = Union[str, "os.PathLike[str]", BinaryIO]

# A file counts as truncated when it decodes shorter than it declares by more than this.
_TRUNCATION_MIN_S = 0.5
_TRUNCATION_FRACTION = 0.05
# Raw elementary streams have no length header: FFmpeg estimates their duration from the bitrate,
# which is far off for VBR (a 40 s VBR mp3 without a Xing header "declares" 57.7 s).
_ESTIMATED_DURATION_FORMATS = frozenset({"aac", "ac3", "eac3", "dts", "amr", "mpeg", "loas", "latm"})
# Demuxers that open files which are not audio at all (images, text shown as ANSI art).
_NON_MEDIA_FORMATS = frozenset({"image2", "tty", "bin", "ansi", "webp_pipe", "gif", "apng"})

# Sample rates audio can have: a header outside them is damaged or hostile (a 64 KB wav claiming 1 Hz
# would be 18 hours at 16 kHz).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 768_000
MAX_CHANNELS = 64


@contextlib.contextmanager
def _peek(source: AudioSource) -> Iterator[Optional[BinaryIO]]:
    """The source as a binary file to read anywhere in, or None for a stream that cannot seek; a path
    that cannot be opened raises its read failure. A file object is left where it was: the decoder
    reading it is in the middle of it."""
    if hasattr(source, "read"):
        seekable = getattr(source, "seekable", None)
        if seekable is None or not seekable():
            yield None
            return
        position = source.tell()
        try:
            yield source
        finally:
            source.seek(position)
        return
    try:
        f = open(os.fspath(source), "rb")
    except OSError as exc:
        raise read_failure(exc) from exc
    with f:
        yield f


# --- before decoding ---------------------------------------------------------------------------

def reject_empty(source: AudioSource) -> None:
    """EmptyFile for 0-byte paths and for file objects with nothing left to read (when seekable). The
    size decides, never what could be read: a file the run may not read is not empty."""
    if hasattr(source, "read"):
        with _peek(source) as f:
            empty = f is not None and f.tell() >= f.seek(0, os.SEEK_END)  # where it is, then where it ends
    else:
        try:
            empty = os.path.getsize(os.fspath(source)) == 0
        except OSError as exc:
            raise read_failure(exc) from exc
    if empty:
        raise TaggingError("EmptyFile", "the file is 0 bytes")


def open_failure(source: AudioSource, error: Exception) -> TaggingError:
    """Map a failed av.open: a file that cannot be read is a read failure (raised by read_head), a known
    audio signature means a damaged file, anything else is not audio."""
    head = read_head(source)
    container_name = audio_signature(head)
    if container_name is None:
        return TaggingError("NotAudio", f"no audio format recognised ({error_text(error)})")
    if isinstance(error, EOFError):
        return TaggingError("Truncated", f"{container_name} file ends inside its header ({error_text(error)})")
    return TaggingError("Corrupt", f"{container_name} header could not be read ({error_text(error)})")


def read_head(source: AudioSource, size: int = 16) -> bytes:
    """The first bytes of the file, leaving a file object where it was; b'' for a stream that cannot
    seek. A file that cannot be opened or read raises its read failure (PermissionDenied, ...)."""
    try:
        with _peek(source) as f:
            if f is not None:
                f.seek(0)
                return f.read(size)
    except OSError as exc:
        raise read_failure(exc) from exc
    except (ValueError, AttributeError):
        pass
    return b""


def audio_signature(head: bytes) -> str | None:
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


def stream_format(stream: av.audio.stream.AudioStream) -> tuple[int, int]:
    """(sample rate, channels) of the stream; UnsupportedFormat when there is no decoder for it."""
    context = stream.codec_context
    if context is None:
        raise TaggingError("UnsupportedFormat", "FFmpeg has no decoder for the audio stream")
    return checked_format(int(context.sample_rate or 0), int(context.channels or 0))


def checked_format(rate: int, channels: int) -> tuple[int, int]:
    """(rate, channels), or UnsupportedFormat when they are not what audio has."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise TaggingError("UnsupportedFormat", f"sample rate {rate} Hz is outside "
                                                f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise TaggingError("UnsupportedFormat", f"{channels} channels (1 to {MAX_CHANNELS} are audio)")
    return rate, channels


def audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream:
    """The container's first audio stream; NotAudio or NoAudioStream when it has none."""
    if container.streams.audio:
        return container.streams.audio[0]
    format_name = container.format.name
    if format_name in _NON_MEDIA_FORMATS or format_name.endswith("_pipe"):
        raise TaggingError("NotAudio", f"the file is {format_name}, not audio")
    kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
    raise TaggingError("NoAudioStream", f"{format_name} container has no audio stream (streams: {kinds})")


def error_text(error: Exception) -> str:
    """A decoding library's error for a row's message: its type and text, at most 200 characters."""
    # FFmpeg's errors end with the file name FFmpeg was given, a path or '<none>' for a stream: the
    # row already names the input, and the same file must give the same message wherever it is read.
    text = error.strerror if isinstance(error, av.FFmpegError) and error.strerror else str(error)
    return f"{type(error).__name__}: {text}"[:200]


# --- durations ----------------------------------------------------------------------------------

def declared_duration_s(source: AudioSource, container: av.container.InputContainer,
                        stream: av.audio.stream.AudioStream) -> float | None:
    """Duration the file states (stream header first, then container), in seconds; None when it
    states none (FFmpeg's estimate from the bitrate is not a statement)."""
    if not _duration_is_declared(source, container):
        return None
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
        with _peek(source) as f:
            return f is not None and _scan_mp3_header(f)
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


def mp4_sample_limit(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, rate: int) -> int | None:
    """Samples the mp4 edit list presents; FFmpeg drops AAC priming itself but not the tail padding."""
    if "mp4" not in container.format.name or stream.duration is None or stream.time_base is None:
        return None
    return int(round(stream.duration * stream.time_base * rate))


def check_complete(source: AudioSource, format_name: str, rate: int) -> None:
    """Truncated, before any decoding, where the container itself shows it was cut: a wav whose
    data chunk states more bytes than the file holds, an Ogg stream without its end-of-stream page."""
    with _peek(source) as f:
        if f is None:
            return
        size = f.seek(0, os.SEEK_END)
        if format_name == "wav":
            stated = _wav_data_span(f)
            if stated is not None:
                offset, data_bytes, block_align = stated
                if size - offset < data_bytes - block_align:  # the header states every byte: no tolerance
                    raise TaggingError("Truncated", f"the wav data chunk states {data_bytes // block_align / rate:.3f} s, "
                                                    f"the file holds {max(size - offset, 0) // block_align / rate:.3f} s")
        elif format_name == "ogg" and not _ogg_ends_with_eos(f, size):
            raise TaggingError("Truncated", "the Ogg stream ends without its end-of-stream page")


def _wav_data_span(f: BinaryIO) -> tuple[int, int, int] | None:
    """(offset of the data, bytes the data chunk states, bytes per frame) of a RIFF wav; None when the
    header states no size (0 or 0xFFFFFFFF: written as a stream) or cannot be walked."""
    f.seek(0)
    if f.read(12)[:4] != b"RIFF":
        return None
    block_align = None
    for _ in range(64):  # chunks before the data: fmt, LIST, fact, ... a few at most
        header = f.read(8)
        if len(header) < 8:
            return None
        chunk, length = header[:4], int.from_bytes(header[4:], "little")
        if chunk == b"fmt ":
            block_align = int.from_bytes(f.read(16)[12:14], "little")
            f.seek(length - 16 + (length & 1), os.SEEK_CUR)
        elif chunk == b"data":
            if not block_align or length in (0, 0xFFFFFFFF):
                return None
            return f.tell(), length, block_align
        else:
            f.seek(length + (length & 1), os.SEEK_CUR)
    return None


def _ogg_ends_with_eos(f: BinaryIO, size: int) -> bool:
    """Whether the file's pages run whole to its end and the last carries the end-of-stream flag
    (header type bit 0x04). Walks the page headers (27 bytes + the lacing table each)."""
    position = 0
    while True:
        f.seek(position)
        header = f.read(27)
        if len(header) < 27 or header[:4] != b"OggS":
            return False
        lacing = f.read(header[26])
        end = position + 27 + header[26] + sum(lacing)
        if len(lacing) < header[26] or end > size:
            return False  # the last page is cut
        if end == size:
            return bool(header[5] & 0x04)
        position = end


# --- after decoding -----------------------------------------------------------------------------

def check_truncation(declared_s: float | None, decoded_s: float) -> None:
    """Truncated when the file decoded shorter than it declares, by more than a small tolerance."""
    if declared_s is None:
        return
    tolerance = max(_TRUNCATION_MIN_S, _TRUNCATION_FRACTION * declared_s)
    if declared_s - decoded_s > tolerance:
        raise TaggingError(
            "Truncated", f"decoded {decoded_s:.3f} s of a declared {declared_s:.3f} s",
        )
