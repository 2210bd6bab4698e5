"""Loading a converted model for inference: the serving signature for a precision, on the device
TensorFlow sees (GPU memory grows as needed instead of being taken whole)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from musicnn_beam.models.registry import signature_name

# Patches per model call when none is asked for: CPU throughput is flat from 8 to 64 patches a call
# (`make bench`, model rows) while memory grows with the batch (oneDNN's working buffers: measured
# 1.24 GB of RSS after calls of 8, 1.57 GB of 16, 1.84 GB of 32); a GPU wants large batches.
DEFAULT_BATCH_SIZE = {"CPU": 8, "GPU": 512}


def configure_gpus() -> list:
    """Let TensorFlow's GPU memory grow on demand (several processes may share a GPU). Returns the GPUs."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the device is already initialised in this process: nothing to change
            pass
    return gpus


class LoadedModel:
    """A SavedModel's serving signature: (N, frames, mels) float32 -> activations, embedding."""

    def __init__(self, path: str, precision: str = "float32"):
        self.device = "GPU" if configure_gpus() else "CPU"
        self._saved = tf.saved_model.load(path)
        self._serve = self._saved.signatures[signature_name(precision)]

    def __call__(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, frames, mels) float32 -> activations (N, classes), embedding (N, dim), in one call."""
        out = self._serve(log_mel_patches=tf.convert_to_tensor(patches))
        return out["activations"].numpy(), out["embedding"].numpy()
