"""The VGG-like baseline shipped with musicnn 0.1.0 (five 3x3 conv blocks of 128 filters), at inference.

It has no dense hidden layer, so its embedding is the flattened pool5 map (2 x 1 x 128 = 256 values
for a 187 x 96 patch): the representation the output layer reads.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from musicnn_beam.models.layers import Weights, batch_norm, conv2d, dense

_LAYERS = tuple((f"{i}CNN", f"batch_normalization_{i}") for i in range(1, 6))


def forward(x: tf.Tensor, weights: Weights, pools: Sequence[Sequence[int]]) -> tuple[tf.Tensor, tf.Tensor]:
    """(N, 187, 96) log-mel patches -> logits (N, classes), embedding (N, 256).

    pools: per block [size_t, size_f, stride_t, stride_f] of the max-pooling. They come from the
    model's metadata because the two checkpoints were trained with different pooling (read off their
    .meta graphs; musicnn's models.py matches MTT_vgg only).
    """
    y = batch_norm(tf.expand_dims(x, 3), weights, "batch_normalization")
    for (conv, bn), (size_t, size_f, stride_t, stride_f) in zip(_LAYERS, pools, strict=True):
        y = batch_norm(conv2d(y, weights, conv, "SAME"), weights, bn)
        y = tf.nn.max_pool2d(y, ksize=(size_t, size_f), strides=(stride_t, stride_f), padding="VALID")
    embedding = tf.reshape(y, [-1, y.shape[1] * y.shape[2] * y.shape[3]])
    return dense(embedding, weights, "dense"), embedding
