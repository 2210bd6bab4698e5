"""A model's feature recipe, read from its metadata (model.json's `features` block, `sample_rate`
and `patch_frames`): what the feature stage computes for that model.

The sample rate, FFT size, hop, mel bands and range, and patch length are free; the parts that
transforms.features computes one way only (window, centring, mel scale and norm, power, log
compression) must be named as that way, and a model asking for anything else is refused before a
run starts (RecipeError), instead of silently getting MusiCNN's features and wrong tags.
No TensorFlow here: the launcher checks a recipe before it imports TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


class RecipeError(ValueError):
    """A model's metadata asks for features this code does not compute."""


def _log10_10000_f16(mel: np.ndarray) -> np.ndarray:
    # float32 on purpose: numpy 2 would keep float16 and overflow to inf on loud music.
    return np.log10(np.float32(10000) * mel.astype(np.float32) + np.float32(1))


# The log compressions a model's metadata may name, applied to the float16 mel power.
COMPRESSIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log10(10000 * float16(mel) + 1)": _log10_10000_f16,
}
# The parts of the recipe that have exactly one implementation here: the metadata must name them so.
FIXED = {"type": "log-mel", "window": "periodic hann", "center": True, "pad_mode": "constant",
         "mel_scale": "slaney", "mel_norm": "slaney", "power": 2.0}


@dataclass(frozen=True)
class FeatureRecipe:
    """The numbers of a model's log-mel features, from its metadata (FeatureRecipe.from_metadata)."""

    sample_rate: int  # Hz, mono
    n_fft: int
    hop_length: int  # samples between frames
    n_mels: int
    f_min: float  # Hz
    f_max: float  # Hz
    patch_frames: int  # frames per model input patch
    compression: str  # a key of COMPRESSIONS

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> "FeatureRecipe":
        """model.json -> FeatureRecipe; RecipeError (one line naming the field) for anything else."""
        name = metadata.get("name", "the model")
        block = metadata.get("features")
        if not isinstance(block, dict):
            raise RecipeError(f"{name}: model.json has no `features` block")
        for key, wanted in FIXED.items():
            if block.get(key) != wanted:
                raise RecipeError(f"{name}: features.{key} = {block.get(key)!r} is not supported (only {wanted!r})")
        if block.get("compression") not in COMPRESSIONS:
            raise RecipeError(f"{name}: features.compression = {block.get('compression')!r} is not supported "
                              f"(only {', '.join(map(repr, COMPRESSIONS))})")
        try:
            recipe = cls(sample_rate=_positive_int(metadata, "sample_rate"), n_fft=_positive_int(block, "n_fft"),
                         hop_length=_positive_int(block, "hop_length"), n_mels=_positive_int(block, "n_mels"),
                         f_min=float(block["fmin"]), f_max=float(block["fmax"]),
                         patch_frames=_positive_int(metadata, "patch_frames"), compression=block["compression"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RecipeError(f"{name}: bad or missing feature setting in model.json ({exc})") from exc
        if not 0 <= recipe.f_min < recipe.f_max <= recipe.sample_rate / 2:
            raise RecipeError(f"{name}: the mel range {recipe.f_min}-{recipe.f_max} Hz must lie within 0 and "
                              f"half the sample rate ({recipe.sample_rate / 2:g} Hz)")
        return recipe

    def compress(self, mel: np.ndarray) -> np.ndarray:
        """float16 mel power (..., n_mels) -> float32 log-mel."""
        return COMPRESSIONS[self.compression](mel)

    @property
    def seconds_per_frame(self) -> float:
        return self.hop_length / self.sample_rate

    @property
    def seconds_per_patch(self) -> float:
        """Audio seconds one patch covers (MusiCNN: 187 * 256 / 16000 = 2.992 s)."""
        return self.patch_frames * self.seconds_per_frame

    def n_frames(self, n_samples: int) -> int:
        """Frames of a centred STFT: 1 + n_samples // hop."""
        return 1 + n_samples // self.hop_length


def _positive_int(mapping: dict[str, Any], key: str) -> int:
    value = mapping[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} = {value!r} is not a positive integer")
    return value
