"""The one error type for an input that yields no tags: a short `kind` (the errors table's `error`
column) and a message for people. Decoding, features and inference raise it; KINDS is the list the
README documents.
"""
from __future__ import annotations

# kind -> (stage that raises it, what it means). Stages are those of transforms.records.
KINDS: dict[str, tuple[str, str]] = {
    "ConflictingTrackId": ("input", "the file is named with different track_ids (e.g. by two manifests)"),
    "EmptyFile": ("decode", "the file is 0 bytes"),
    "NotAudio": ("decode", "no audio format recognised (text, images, random bytes)"),
    "NoAudioStream": ("decode", "a media container without an audio stream (e.g. a video-only mp4)"),
    "Corrupt": ("decode", "an audio format is recognised but its header or data cannot be decoded"),
    "Truncated": ("decode", "the file decodes shorter than its header states (cut off)"),
    "EmptyAudio": ("decode", "the audio stream decodes to 0 samples"),
    "TooShort": ("features", "under 0.5 s of audio: too little to repeat-pad into a patch"),
    "Silent": ("features", "peak amplitude under -80 dBFS"),
    "InferenceFailed": ("inference", "the model raised on the batch that held this track"),
}


class TaggingError(Exception):
    """An input that cannot be tagged, for a reason named by `kind` (one of KINDS)."""

    def __init__(self, kind: str, message: str):
        if kind not in KINDS:
            raise ValueError(f"unknown error kind {kind!r}: add it to transforms.errors.KINDS and the README")
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    def __reduce__(self):
        # Default exception pickling replays self.args (one string) into __init__; Beam pickles errors.
        return (type(self), (self.kind, self.message))
