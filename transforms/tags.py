"""A track's top tags: the highest of its mean activations, named by the model's classes."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def top_tags(activations: np.ndarray, classes: Sequence[str], n: int = 5) -> list[tuple[str, float]]:
    """(n_classes,) activations -> the n highest as (tag, activation), highest first; ties keep the
    classes' order (a stable sort), so that every reader of the store names the same tags."""
    order = np.argsort(-np.asarray(activations), kind="stable")[:n]
    return [(classes[i], float(activations[i])) for i in order if i < len(classes)]
