"""The original musicnn 0.1.0 path, the reference we are measured against: its shipped graph and
checkpoint, fed with librosa features as its extractor computes them.

Used by the tests and the benchmark, never by the pipeline (librosa comes with the `test` extra).
The shipped .meta graph is imported as is (minus the `_output_shapes` attributes that TF 2.x
refuses) and the checkpoint restored into it, so no code of ours stands between the reference
numbers and the original weights. The features are extractor.batch_data()'s: librosa.load at 16 kHz,
librosa's mel spectrogram, float16 rounding, log10(10000 x + 1) (in float32, as numpy 1 computed it),
non-overlapping 187-frame patches with the last partial one dropped; extractor() runs batch 1.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

ORIGINAL_ENV = "MUSICNN_ORIGINAL"

# Tensor names in the shipped graphs.
INPUT = "model/Placeholder:0"
IS_TRAINING = "model/Placeholder_2:0"
ACTIVATIONS = "model/Sigmoid:0"
# musicnn: the batch-normalised 200-unit dense layer; VGG: pool5, flattened by the caller.
EMBEDDING = {"musicnn": "model/batch_normalization_10/batchnorm/add_1:0", "vgg": "model/max_pooling2d_4/MaxPool:0"}


def original_dir() -> Path:
    """The unpacked musicnn package folder (holding MSD_musicnn/ ...), from $MUSICNN_ORIGINAL."""
    default = Path(__file__).resolve().parent.parent / "build" / "musicnn-0.1.0"
    return Path(os.environ.get(ORIGINAL_ENV, default)) / "musicnn"


class OriginalModel:
    """One of the shipped checkpoints in its own graph and session (built once)."""

    def __init__(self, checkpoint: str, architecture: str):
        folder = original_dir() / checkpoint
        meta = tf.compat.v1.MetaGraphDef()
        meta.ParseFromString((folder / ".meta").read_bytes())
        for node in meta.graph_def.node:
            node.attr.pop("_output_shapes", None)
        self.graph = tf.Graph()
        with self.graph.as_default():
            saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
            self.session = tf.compat.v1.Session(graph=self.graph)
            saver.restore(self.session, str(folder) + "/")
        self._fetches = [self.graph.get_tensor_by_name(ACTIVATIONS),
                         self.graph.get_tensor_by_name(EMBEDDING[architecture])]
        self._input = self.graph.get_tensor_by_name(INPUT)
        self._is_training = self.graph.get_tensor_by_name(IS_TRAINING)

    def __call__(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 187, 96) float32 log-mel patches -> activations (N, classes), embedding (N, dim)."""
        activations, embedding = self.session.run(
            self._fetches, feed_dict={self._input: patches, self._is_training: False})
        return activations, embedding.reshape(len(patches), -1)


PATCH_FRAMES = 187
CHECKPOINTS = {"msd-musicnn": ("MSD_musicnn", "musicnn"), "mtt-musicnn": ("MTT_musicnn", "musicnn"),
               "msd-vgg": ("MSD_vgg", "vgg"), "mtt-vgg": ("MTT_vgg", "vgg")}


def librosa_load(path: str) -> np.ndarray:
    """An audio file -> (n,) float32 mono at 16 kHz, as librosa.load(path, sr=16000)."""
    import librosa

    return librosa.load(path, sr=16000)[0]


def librosa_log_mel(samples: np.ndarray) -> np.ndarray:
    """(n,) float32 at 16 kHz -> (T, 96) float32, extractor.batch_data()'s recipe."""
    import librosa

    mel = librosa.feature.melspectrogram(y=samples, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
    return np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1)


def original_patches(log_mel: np.ndarray) -> np.ndarray:
    """(T, 96) -> (P, 187, 96): non-overlapping patches, the last partial one dropped."""
    starts = range(0, log_mel.shape[0] - PATCH_FRAMES + 1, PATCH_FRAMES)
    return np.stack([log_mel[s:s + PATCH_FRAMES] for s in starts])


@functools.lru_cache(maxsize=None)
def original_model(name: str) -> OriginalModel:
    """One of our model names -> the shipped checkpoint in its own graph, built once per process."""
    return OriginalModel(*CHECKPOINTS[name])


def original_tags(path: str, model: str = "msd-musicnn") -> tuple[np.ndarray, np.ndarray]:
    """An audio file -> per-patch activations (P, 50) and embeddings (P, dim), batch 1 as the original."""
    patches = original_patches(librosa_log_mel(librosa_load(path)))
    net = original_model(model)
    outputs = [net(patches[i:i + 1]) for i in range(len(patches))]
    return np.concatenate([a for a, _ in outputs]), np.concatenate([e for _, e in outputs])
