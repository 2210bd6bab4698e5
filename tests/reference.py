"""The original musicnn 0.1.0 path, for comparison: librosa features + the shipped graph and checkpoint.

This is extractor.batch_data() + extractor() (non-overlapping 187-frame patches, last partial patch
dropped) with numpy 2's float16 promotion fixed as the original behaved under numpy 1.
"""
from __future__ import annotations

import functools

import librosa
import numpy as np

from models.original import OriginalModel

PATCH_FRAMES = 187
CHECKPOINTS = {"msd-musicnn": ("MSD_musicnn", "musicnn"), "mtt-musicnn": ("MTT_musicnn", "musicnn"),
               "msd-vgg": ("MSD_vgg", "vgg"), "mtt-vgg": ("MTT_vgg", "vgg")}


def librosa_log_mel(samples: np.ndarray) -> np.ndarray:
    """(n,) float32 at 16 kHz -> (T, 96) float32, musicnn's extractor.batch_data() recipe."""
    mel = librosa.feature.melspectrogram(y=samples, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
    return np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)


def librosa_load(path: str) -> np.ndarray:
    return librosa.load(path, sr=16000)[0]


def original_patches(log_mel: np.ndarray) -> np.ndarray:
    starts = range(0, log_mel.shape[0] - PATCH_FRAMES + 1, PATCH_FRAMES)
    return np.stack([log_mel[s:s + PATCH_FRAMES] for s in starts])


@functools.lru_cache(maxsize=None)
def original_model(name: str) -> OriginalModel:
    return OriginalModel(*CHECKPOINTS[name])


def original_tags(path: str, model: str = "msd-musicnn") -> tuple[np.ndarray, np.ndarray]:
    """An audio file -> per-patch activations (P, 50) and embeddings (P, dim), batch 1 as the original."""
    patches = original_patches(librosa_log_mel(librosa_load(path)))
    net = original_model(model)
    outputs = [net(patches[i:i + 1]) for i in range(len(patches))]
    return np.concatenate([a for a, _ in outputs]), np.concatenate([e for _, e in outputs])
