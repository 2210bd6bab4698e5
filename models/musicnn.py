"""MusiCNN (Pons & Serra, 2019) at inference, in TF2, mirroring musicnn 0.1.0's models.py op for op.

Front end: musically motivated convolutions (timbral: 7 x 38 and 7 x 67 mel bins; temporal: 128, 64
and 32 frames), each max-pooled over frequency. Mid end: three dense-connected 1-D convolutions over
time. Back end: max and mean over time, a 200-unit dense layer (its batch-normalised output is the
embedding), and the output layer.
"""
from __future__ import annotations

import tensorflow as tf

from musicnn_beam.models.layers import Weights, batch_norm, batch_norm_affine, conv2d, dense, pad_time

# Layer names are the checkpoint's, in the order the original code creates them.
_TIMBRAL = (("conv2d", "batch_normalization_1"), ("conv2d_1", "batch_normalization_2"))
_TEMPORAL = (("conv2d_2", "batch_normalization_3"), ("conv2d_3", "batch_normalization_4"),
             ("conv2d_4", "batch_normalization_5"))
_MIDEND = (("conv2d_5", "batch_normalization_6"), ("conv2d_6", "batch_normalization_7"),
           ("conv2d_7", "batch_normalization_8"))


def _conv_bn_freq_max(x: tf.Tensor, weights: Weights, conv: str, bn: str, padding: str) -> tf.Tensor:
    """(N, T', F, 1) -> (N, T, filters): max over frequency of BN(ReLU(conv(x) + bias)).

    Per channel, z -> BN(ReLU(z + bias)) is monotone: non-decreasing where the batch norm's scale
    is positive, non-increasing where it is negative. Rounding keeps that true in floating point, so
    the max over frequency can be taken first, on the raw convolution (the min where the scale is
    negative), and the per-channel function applied after: the same numbers as the original order,
    without three passes over the largest tensors of the network. The min comes as a max by
    negating those channels' kernels (exact: negation commutes with every rounding).
    """
    kernel = weights[f"{conv}/kernel"]
    scale, offset = batch_norm_affine(weights, bn)
    sign = tf.where(scale < 0, -1.0, 1.0)
    raw = tf.nn.conv2d(tf.cast(x, kernel.dtype), kernel * tf.cast(sign, kernel.dtype), strides=1, padding=padding)
    extreme = tf.cast(tf.reduce_max(raw, axis=2), tf.float32) * sign
    return tf.nn.relu(tf.nn.bias_add(extreme, weights[f"{conv}/bias"])) * scale + offset


def frontend(x: tf.Tensor, weights: Weights) -> tf.Tensor:
    """(N, T, 96) log-mel -> (N, T, 561) front-end features (204 + 204 timbral, 3 x 51 temporal)."""
    normalized = batch_norm(tf.expand_dims(x, 3), weights, "batch_normalization")
    padded = pad_time(normalized, 3, 3)
    timbral = [_conv_bn_freq_max(padded, weights, conv, bn, "VALID") for conv, bn in _TIMBRAL]
    temporal = [_conv_bn_freq_max(normalized, weights, conv, bn, "SAME") for conv, bn in _TEMPORAL]
    return tf.concat(timbral + temporal, axis=2)


def midend(features: tf.Tensor, weights: Weights) -> tf.Tensor:
    """(N, T, 561) -> (N, T, 753): the input and three 64-filter layers, the last two residual."""
    x = tf.expand_dims(features, 3)  # (N, T, 561, 1)
    outputs = [x]
    previous = x
    for i, (conv, bn) in enumerate(_MIDEND):
        y = batch_norm(conv2d(pad_time(previous, 3, 3), weights, conv, "VALID"), weights, bn)
        y = tf.transpose(y, [0, 1, 3, 2])  # (N, T, 64, 1)
        previous = y if i == 0 else y + previous
        outputs.append(previous)
    return tf.squeeze(tf.concat(outputs, axis=2), 3)


def backend(features: tf.Tensor, weights: Weights) -> tuple[tf.Tensor, tf.Tensor]:
    """(N, T, 753) -> logits (N, classes), embedding (N, 200)."""
    x = tf.expand_dims(features, 3)
    pooled = tf.concat([tf.reduce_max(x, axis=1), tf.reduce_mean(x, axis=1)], axis=2)  # (N, 753, 2)
    flat = batch_norm(tf.reshape(pooled, [-1, pooled.shape[1] * 2]), weights, "batch_normalization_9")
    embedding = batch_norm(dense(flat, weights, "dense", relu=True), weights, "batch_normalization_10")
    return dense(embedding, weights, "dense_1"), embedding


def forward(x: tf.Tensor, weights: Weights) -> tuple[tf.Tensor, tf.Tensor]:
    """(N, T, 96) log-mel patches -> logits (N, classes), embedding (N, 200). Any T works; trained on 187."""
    return backend(midend(frontend(x, weights), weights), weights)
