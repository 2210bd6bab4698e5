"""The original musicnn 0.1.0 graph and checkpoint, restored as shipped: the reference we are measured against.

Used by the tests and the benchmark, never by the pipeline. The shipped .meta graph is imported as is
(minus the `_output_shapes` attributes that TF 2.x refuses) and the checkpoint restored into it, so
no code of ours stands between the reference numbers and the original weights.
"""
from __future__ import annotations

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
