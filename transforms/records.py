"""What flows between the stages: one track's features, one track's predictions, one input's error."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Stages named in the errors table.
READ, DECODE, FEATURES, INFERENCE = "read", "decode", "features", "inference"


@dataclass(frozen=True)
class TrackFeatures:
    """A decoded track, ready for the model. mel: (frames, n_mels) float16 mel power."""

    uri: str
    mel: np.ndarray
    source_sample_rate: int
    channels: int
    duration_s: float


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
    """An input that produced no tags, and why."""

    uri: str
    stage: str
    error: str
    message: str

    @classmethod
    def from_exception(cls, uri: str, stage: str, exc: BaseException) -> "ErrorRecord":
        kind = getattr(exc, "kind", None) or type(exc).__name__
        message = getattr(exc, "message", None) or str(exc)
        return cls(uri=uri, stage=stage, error=kind, message=message[:2000] or kind)
