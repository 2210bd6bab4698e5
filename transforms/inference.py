"""Batched MusiCNN inference through Beam's RunInference, and per-track assembly.

Batches span tracks: RunInference's BatchElements groups TrackFeatures weighted by their patch
count; the handler cuts every track into patches, runs all of them through the model in fixed-size
chunks and splits the outputs back per track. RunInference loads the model once per worker process
and shares it between the process's threads.
"""
from __future__ import annotations

import functools
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf
from apache_beam.ml.inference.base import ModelHandler

from models.registry import ModelSpec
from transforms import features
from transforms.records import TrackFeatures, TrackPrediction

TOP_K = 5


def count_patches(track: TrackFeatures, patch_frames: int, hop: int) -> int:
    return len(features.patch_starts(track.mel.shape[0], patch_frames, hop))


class LoadedModel:
    """A SavedModel's serving signature: (N, frames, mels) float32 -> activations, embedding."""

    def __init__(self, path: str):
        self._saved = tf.saved_model.load(path)
        self._serve = self._saved.signatures["serving_default"]

    def __call__(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._serve(log_mel_patches=tf.convert_to_tensor(patches))
        return out["activations"].numpy(), out["embedding"].numpy()


def predict_tracks(tracks: Sequence[TrackFeatures], model, patch_frames: int, hop: int,
                   chunk: int) -> list[TrackPrediction]:
    """Run the model over all patches of several tracks at once.

    Each track's float16 mel (T, M) is cut into (P, patch_frames, M) patches; all patches are
    log-compressed and fed in chunks of `chunk` (the model batch size); outputs are split per track.
    """
    cut = [features.to_patches(t.mel, patch_frames, hop) for t in tracks]
    patches = features.log_compress(np.concatenate([p for p, _ in cut]))
    outputs = [model(patches[i:i + chunk]) for i in range(0, len(patches), chunk)]
    activations = np.concatenate([a for a, _ in outputs])
    embeddings = np.concatenate([e for _, e in outputs])
    bounds = np.cumsum([0] + [len(p) for p, _ in cut])
    return [TrackPrediction(track=t, activations=activations[lo:hi], embeddings=embeddings[lo:hi],
                            patch_starts=features.patch_starts(t.mel.shape[0], patch_frames, hop), padded=padded)
            for t, (_, padded), lo, hi in zip(tracks, cut, bounds[:-1], bounds[1:])]


class TaggerModelHandler(ModelHandler[TrackFeatures, TrackPrediction, LoadedModel]):
    """RunInference's view of a converted MusiCNN/VGG SavedModel.

    batch_patches: model batch size (patches per forward pass). BatchElements gathers tracks into
    batches of batch_patches to max_batch_patches patches (its adaptive size counts patches, through
    element_size_fn); a track longer than that comes alone.
    """

    def __init__(self, model: ModelSpec, patch_hop: int, batch_patches: int = 64, max_batch_patches: int = 1024):
        self.model = model
        self.patch_hop = patch_hop
        self.batch_patches = batch_patches
        super().__init__(min_batch_size=batch_patches, max_batch_size=max(batch_patches, max_batch_patches),
                         element_size_fn=functools.partial(count_patches, patch_frames=model.patch_frames, hop=patch_hop))

    def load_model(self) -> LoadedModel:
        return LoadedModel(self.model.path)

    def run_inference(self, batch: Sequence[TrackFeatures], model: LoadedModel,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[TrackPrediction]:
        return predict_tracks(batch, model, self.model.patch_frames, self.patch_hop, self.batch_patches)

    def get_num_bytes(self, batch: Sequence[TrackFeatures]) -> int:
        return sum(t.mel.nbytes for t in batch)

    def get_metrics_namespace(self) -> str:
        return "musicnn_beam"


def track_row(prediction: TrackPrediction, model: ModelSpec, top_k: int = TOP_K) -> dict:
    """Per-track summary: mean activations and embedding over patches, top tags."""
    track = prediction.track
    mean_activations = prediction.activations.mean(axis=0)
    top = np.argsort(-mean_activations, kind="stable")[:top_k]
    return {
        "uri": track.uri,
        "n_patches": int(len(prediction.activations)),
        "padded": bool(prediction.padded),
        "duration_s": float(track.duration_s),
        "sample_rate": int(track.source_sample_rate),
        "channels": int(track.channels),
        "activations": mean_activations.astype(np.float32).tolist(),
        "embedding": prediction.embeddings.mean(axis=0).astype(np.float32).tolist(),
        "top_tags": [model.classes[i] for i in top],
        "model": model.name,
    }


def patch_rows(prediction: TrackPrediction) -> Iterator[dict]:
    seconds_per_frame = features.HOP_LENGTH / features.SAMPLE_RATE
    for i, (start, acts, emb) in enumerate(zip(prediction.patch_starts, prediction.activations, prediction.embeddings)):
        yield {"uri": prediction.track.uri, "patch": i, "start_s": float(start * seconds_per_frame),
               "activations": acts.tolist(), "embedding": emb.tolist()}
