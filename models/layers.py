"""Inference-mode building blocks shared by the MusiCNN and VGG graphs.

They reproduce tf.compat.v1.layers at inference (training=False) with the same TF ops, so that the
converted models match the original graph to float32 rounding. Weights are a mapping from the
original checkpoint's variable names to tensors.
"""
from __future__ import annotations

from typing import Mapping

import tensorflow as tf

Weights = Mapping[str, tf.Tensor]

# tf.compat.v1.layers.batch_normalization's default.
BATCH_NORM_EPSILON = 1e-3


def batch_norm_affine(weights: Weights, name: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Inference-time batch normalisation as (scale, offset) per channel: y = x * scale + offset."""
    scale = weights[f"{name}/gamma"] * tf.math.rsqrt(weights[f"{name}/moving_variance"] + BATCH_NORM_EPSILON)
    return scale, weights[f"{name}/beta"] - weights[f"{name}/moving_mean"] * scale


def batch_norm(x: tf.Tensor, weights: Weights, name: str) -> tf.Tensor:
    """Batch normalisation with the moving statistics, over the last axis of x (any rank)."""
    scale, offset = batch_norm_affine(weights, name)
    return x * scale + offset


def conv2d(x: tf.Tensor, weights: Weights, name: str, padding: str, relu: bool = True) -> tf.Tensor:
    """2-D convolution, stride 1, NHWC, with bias and (by default) ReLU, as tf.compat.v1.layers.conv2d.

    The convolution runs in the kernel's dtype (reduced precision when the caller cast the kernels);
    its output comes back as float32 for the bias, ReLU and batch norm.
    """
    kernel = weights[f"{name}/kernel"]
    y = tf.cast(tf.nn.conv2d(tf.cast(x, kernel.dtype), kernel, strides=1, padding=padding), tf.float32)
    y = tf.nn.bias_add(y, weights[f"{name}/bias"])
    return tf.nn.relu(y) if relu else y


def dense(x: tf.Tensor, weights: Weights, name: str, relu: bool = False) -> tf.Tensor:
    """(N, in) -> (N, out) fully connected layer; the matmul runs in the kernel's dtype, like conv2d."""
    kernel = weights[f"{name}/kernel"]
    y = tf.cast(tf.matmul(tf.cast(x, kernel.dtype), kernel), tf.float32)
    y = tf.nn.bias_add(y, weights[f"{name}/bias"])
    return tf.nn.relu(y) if relu else y


def pad_time(x: tf.Tensor, before: int, after: int) -> tf.Tensor:
    """Zero-pad axis 1 (time) of an NHWC tensor."""
    return tf.pad(x, [[0, 0], [before, after], [0, 0], [0, 0]])
