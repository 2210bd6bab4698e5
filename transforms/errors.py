"""The one error type for an input that yields no tags: a short `kind` (the errors table's `error`
column) and a message for people. Decoding, features and inference raise it; KINDS is the list the
README documents.
"""
from __future__ import annotations

import errno
import os

# kind -> (stage that raises it: input, read, decode, features or inference; what it means).
KINDS: dict[str, tuple[str, str]] = {
    "ConflictingTrackId": ("input", "the file is named with different track_ids (e.g. by two manifests)"),
    "NotFound": ("read", "the file is gone (deleted or moved after it was listed)"),
    "PermissionDenied": ("read", "the file cannot be opened or read with the run's credentials"),
    "NotAFile": ("read", "a FIFO, device, socket, folder or symlink loop, not a regular file"),
    "ReadFailed": ("read", "the storage failed to serve the file (network, server error); the message says how"),
    "EmptyFile": ("decode", "the file is 0 bytes"),
    "NotAudio": ("decode", "no audio format recognised (text, images, random bytes)"),
    "NoAudioStream": ("decode", "a media container without an audio stream (e.g. a video-only mp4)"),
    "UnsupportedFormat": ("decode", "a sample rate outside 4-768 kHz, a channel count outside 1-64, or no decoder"),
    "Corrupt": ("decode", "an audio format is recognised but its header or data cannot be decoded"),
    "Truncated": ("decode", "the file decodes shorter than its header states (cut off)"),
    "EmptyAudio": ("decode", "the audio stream decodes to 0 samples"),
    "TooLong": ("decode", "longer than --max-duration (decoding stops there)"),
    "TooLarge": ("decode", "decoding needed more memory than a decoder may use"),
    "Timeout": ("decode", "reading and decoding made no progress for --decode-timeout seconds"),
    "DecoderCrashed": ("decode", "the decoder process died (killed by a signal)"),
    "DecoderError": ("decode", "the decoder failed in an unexpected way; the message names the exception"),
    "TooShort": ("features", "under 0.5 s of audio: too little to repeat-pad into a patch"),
    "Silent": ("features", "peak amplitude under -80 dBFS"),
    "InferenceFailed": ("inference", "the model raised on this track, alone in its batch"),
}


# Kinds that say nothing lasting about the file (the storage, the credentials, the machine, the
# manifests): the next run tries such a file again. Any other kind holds until the file changes.
RETRIED = frozenset({"ConflictingTrackId", "NotFound", "PermissionDenied", "ReadFailed", "Timeout", "InferenceFailed"})


class TaggingError(Exception):
    """An input that cannot be tagged, for a reason named by `kind` (one of KINDS)."""

    def __init__(self, kind: str, message: str):
        if kind not in KINDS:
            raise ValueError(f"unknown error kind {kind!r}: add it to transforms.errors.KINDS and the README")
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    @property
    def stage(self) -> str:
        return KINDS[self.kind][0]

    def __reduce__(self):
        # Default exception pickling replays self.args (one string) into __init__; Beam pickles errors.
        return (type(self), (self.kind, self.message))


def read_failure(exc: BaseException) -> TaggingError:
    """An exception raised while opening or reading a file (any filesystem's) -> its kind, with the
    failure in words and its code (`permission denied (EACCES)`)."""
    if isinstance(exc, TaggingError):
        return exc
    code = _errno_of(exc)
    if code == errno.ENOENT:
        return TaggingError("NotFound", os_error_text(exc))
    if code in (errno.EACCES, errno.EPERM):
        return TaggingError("PermissionDenied", os_error_text(exc))
    # A symlink loop resolves to no file, like a folder is none: lasting until the link changes.
    if code in (errno.EISDIR, errno.ENOTDIR, errno.ELOOP):
        return TaggingError("NotAFile", os_error_text(exc))
    return TaggingError("ReadFailed", os_error_text(exc))


# The code an OSError subclass stands for, where a storage library raises one without an errno
# (s3fs: PermissionError("Access Denied"), FileNotFoundError(key)).
_CODE_OF_TYPE = {FileNotFoundError: errno.ENOENT, PermissionError: errno.EACCES,
                 IsADirectoryError: errno.EISDIR, NotADirectoryError: errno.ENOTDIR}


def _errno_of(exc: BaseException) -> int | None:
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in errno.errorcode:
        return code
    return next((c for t, c in _CODE_OF_TYPE.items() if isinstance(exc, t)), None)


def os_error_text(exc: BaseException) -> str:
    """`permission denied (EACCES)`: an OSError in words with its code, then what a storage library
    adds (an S3 server's own words) where it says more; `Type: text` for anything else. An OSError's
    path is left out: the row names the file, and one failure reads the same on every file."""
    code = _errno_of(exc)
    if code is None:
        return f"{type(exc).__name__}: {exc}"[:200]
    text = code_in_words(code)
    detail = getattr(exc, "strerror", None) or (str(exc.args[0]) if len(exc.args) == 1 else None)
    if detail and str(detail).lower() != os.strerror(code).lower():
        text += f": {detail}"
    return text[:200]


def code_in_words(code: int) -> str:
    """An OS error code as a user reads it: `no space left on device (ENOSPC)`."""
    return f"{os.strerror(code).lower()} ({errno.errorcode.get(code, code)})"
