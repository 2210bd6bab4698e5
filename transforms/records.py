"""What flows between the stages: one track's features, one track's predictions, one input's error."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np

from musicnn_beam.transforms.errors import TaggingError

if TYPE_CHECKING:
    from musicnn_beam.transforms.features import MelFrames

class InputFile(NamedTuple):
    """One input: a URI, the caller's id for it when a manifest gave one, and its version (what the
    listing or the manifest says identifies this content: transforms.sources.version_of); its
    size and audio duration where the listing or the manifest gives them (a dry run sums them)."""

    uri: str
    track_id: Optional[str] = None
    version: Optional[str] = None
    size: Optional[int] = None  # bytes
    duration_s: Optional[float] = None


@dataclass(frozen=True)
class TrackFeatures:
    """A decoded track, ready for the model. mel: (frames, n_mels) float16 mel power, as chunks
    (features.MelFrames) or one array."""

    uri: str
    mel: "MelFrames | np.ndarray"
    source_sample_rate: int
    channels: int
    duration_s: float
    track_id: Optional[str] = None
    version: Optional[str] = None


@dataclass(frozen=True)
class TrackPrediction:
    """The model's per-patch outputs for one track.

    activations: (P, classes) float32; embeddings: (P, dim) float32; patch_starts: (P,) frame indices.
    """

    track: TrackFeatures
    activations: np.ndarray
    embeddings: np.ndarray
    patch_starts: np.ndarray
    padded: bool


@dataclass(frozen=True)
class ErrorRecord:
    """An input that produced no tags, and why: its TaggingError's kind, stage and message."""

    uri: str
    stage: str
    kind: str
    message: str
    track_id: Optional[str] = None
    version: Optional[str] = None

    @classmethod
    def of(cls, source: InputFile, error: TaggingError) -> "ErrorRecord":
        """The row for an input that failed with `error`; its kind names the stage."""
        return cls(uri=source.uri, stage=error.stage, kind=error.kind, message=error.message[:2000] or error.kind,
                   track_id=source.track_id, version=source.version)

    def row(self) -> dict:
        """The errors table's row. Its column for the kind is `error` (the public schema, which the
        README documents and readers query): in code the concept is `kind`."""
        return {"uri": self.uri, "track_id": self.track_id, "stage": self.stage, "error": self.kind,
                "message": self.message, "version": self.version}
