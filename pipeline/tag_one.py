"""One audio file tagged in this process, with the pipeline's own stages (no Beam runner): the same
decoding (in a decoder process), features, model calls and per-track summary as a run, so its
numbers are a run's. For a file that is not in a store (pipeline.similar). Importing this module
imports TensorFlow.
"""
from __future__ import annotations

from typing import Optional

from musicnn_beam.models.registry import ModelSpec
from musicnn_beam.models.serving import LoadedModel
from musicnn_beam.transforms.decoders import DEFAULT_MAX_DURATION_S, DecoderPool
from musicnn_beam.transforms.errors import TaggingError
from musicnn_beam.transforms.extract import extract
from musicnn_beam.transforms.inference import PatchTagger, predict_tracks, track_row
from musicnn_beam.transforms.records import ErrorRecord, InputFile


def tag_one(uri: str, model: ModelSpec, patch_hop: Optional[int] = None, precision: str = "float32",
            max_duration_s: Optional[float] = DEFAULT_MAX_DURATION_S) -> dict:
    """Tag the file at uri (local or any fsspec URI, as normalise_uri writes it) -> its tracks row
    (inference.track_row: mean activations (classes,) and embedding (dim,) as lists, top tags, ...),
    without run_id. patch_hop: None for the model's patch length (a run's default). Raises
    TaggingError when the file cannot be tagged (its kind and message, as a run's errors row says)."""
    recipe = model.recipe
    decoders = DecoderPool(1)
    try:
        features = extract(InputFile(uri), recipe, decoders, max_duration_s)
    finally:
        decoders.close()
    if isinstance(features, ErrorRecord):
        raise TaggingError(features.kind, features.message)
    tagger = PatchTagger(LoadedModel(model.local_path(), precision), recipe)
    prediction = predict_tracks([features], tagger, recipe.patch_frames, patch_hop or recipe.patch_frames)[0]
    return track_row(prediction, model)
