"""Convert musicnn 0.1.0's TF1 checkpoints into TF2 SavedModels, each with its model.json.

    python -m models.convert --original build/musicnn-0.1.0/musicnn --out build/models

Each serving signature (serving_default: float32; serving_bfloat16, serving_float16: reduced-precision
fast paths) takes `log_mel_patches` (N, patch_frames, n_mels) float32 and returns `activations`
(N, classes) and `embedding` (N, dim). Weights are read from the checkpoint by
the original variable names; every one of them must be used, so a mismatch fails the conversion.
"""
from __future__ import annotations

import argparse
import functools
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from musicnn_beam.models import musicnn, vgg
from musicnn_beam.models.recipe import FeatureRecipe
from musicnn_beam.models.registry import METADATA_DIR, METADATA_FILE, PRECISIONS, known_models, signature_name

ARCHITECTURES: dict[str, Callable] = {"musicnn": musicnn.forward, "vgg": vgg.forward}


def forward_fn(metadata: dict) -> Callable:
    """The architecture's forward(x, weights), bound to the model's own parameters."""
    return functools.partial(ARCHITECTURES[metadata["architecture"]], **metadata.get("architecture_params", {}))

# Training-only state kept in the checkpoints.
_OPTIMIZER_MARKERS = ("Adam", "beta1_power", "beta2_power")


def read_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """Checkpoint prefix -> {variable name: array}, without optimizer slots."""
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not any(marker in name for marker in _OPTIMIZER_MARKERS)}


class TaggerModule(tf.Module):
    """The original weights as variables and the architecture's forward pass as serving functions."""

    def __init__(self, weights: dict[str, np.ndarray], metadata: dict):
        super().__init__(name=metadata["name"].replace("-", "_"))
        self._names = sorted(weights)
        self.variables_list = [tf.Variable(weights[n], trainable=False, name=n.replace("/", "__")) for n in self._names]
        self._forward = forward_fn(metadata)
        recipe = FeatureRecipe.from_metadata(metadata)
        spec = tf.TensorSpec([None, recipe.patch_frames, recipe.n_mels], tf.float32, name="log_mel_patches")
        self.serving_functions = {
            signature_name(p): tf.function(functools.partial(self._serve, compute_dtype=tf.as_dtype(p)),
                                           input_signature=[spec])
            for p in PRECISIONS}

    def _weights(self, compute_dtype: tf.DType) -> dict[str, tf.Tensor]:
        return {n: tf.cast(v, compute_dtype) if n.endswith("/kernel") else v
                for n, v in zip(self._names, self.variables_list)}

    def _serve(self, log_mel_patches: tf.Tensor, compute_dtype: tf.DType) -> dict[str, tf.Tensor]:
        logits, embedding = self._forward(log_mel_patches, self._weights(compute_dtype))
        return {"activations": tf.sigmoid(logits), "embedding": embedding}


class _UsageTracker(dict):
    """A weights mapping that remembers which names were read."""

    def __init__(self, *args):
        super().__init__(*args)
        self.used: set[str] = set()

    def __getitem__(self, key):
        self.used.add(key)
        return super().__getitem__(key)


def check_all_weights_used(weights: dict[str, np.ndarray], metadata: dict) -> None:
    tracker = _UsageTracker(weights)
    recipe = FeatureRecipe.from_metadata(metadata)
    x = tf.zeros([1, recipe.patch_frames, recipe.n_mels])
    forward_fn(metadata)(x, tracker)
    unused = sorted(set(weights) - tracker.used)
    if unused:
        raise ValueError(f"{metadata['name']}: checkpoint variables not used by the architecture: {unused}")


def convert(name: str, original_dir: Path, out_dir: Path) -> Path:
    metadata = json.loads((METADATA_DIR / f"{name}.json").read_text())
    checkpoint = original_dir / metadata["original"]["checkpoint"]
    # The checkpoints were saved with an empty prefix inside their folder ("<folder>/.index").
    weights = read_checkpoint(str(checkpoint) + "/")
    check_all_weights_used(weights, metadata)
    module = TaggerModule(weights, metadata)
    target = out_dir / name
    if target.exists():
        shutil.rmtree(target)
    tf.saved_model.save(module, str(target), signatures=module.serving_functions)
    (target / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="the musicnn package folder from the 0.1.0 wheel")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", action="append", choices=known_models(), help="default: all")
    args = parser.parse_args(argv)
    for name in args.model or known_models():
        print(f"converted {name} -> {convert(name, args.original, args.out)}")


if __name__ == "__main__":
    main()
