"""The one error type for an input that yields no tags: a short `kind` (the errors table's `error`
column) and a message for people. Decoding, features and inference raise it; KINDS is the list the
README documents.
"""
from __future__ import annotations

# kind -> (stage that raises it: input, read, decode, features or inference; what it means).
KINDS: dict[str, tuple[str, str]] = {
    "ConflictingTrackId": ("input", "the file is named with different track_ids (e.g. by two manifests)"),
    "NotFound": ("read", "the file is gone (deleted or moved after it was listed)"),
    "PermissionDenied": ("read", "the file cannot be read with the run's credentials"),
    "NotAFile": ("read", "a FIFO, device, socket or folder, not a regular file"),
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
    """An exception raised while opening or reading a file (any filesystem's) -> its kind."""
    if isinstance(exc, TaggingError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, FileNotFoundError):
        return TaggingError("NotFound", text)
    if isinstance(exc, PermissionError):
        return TaggingError("PermissionDenied", text)
    if isinstance(exc, (IsADirectoryError, NotADirectoryError)):
        return TaggingError("NotAFile", text)
    return TaggingError("ReadFailed", text)
