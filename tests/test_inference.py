"""Batched inference's bookkeeping, with a stand-in tagger whose outputs identify each patch: the
patches of several tracks, cut and sent in bounded calls, come back to the right track in order."""
from __future__ import annotations

import numpy as np
import pytest

from musicnn_beam.transforms.inference import predict_tracks
from musicnn_beam.transforms.records import TrackFeatures

pytestmark = pytest.mark.unit


def fingerprint_tagger(calls: list[int]):
    """(N, frames, mels) -> activations (N, 2): the patch's first and last frame's first mel value;
    embeddings (N, 1): its sum. Records each call's N."""
    def tag(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(patches))
        values = patches.astype(np.float32)
        return np.stack([values[:, 0, 0], values[:, -1, 0]], axis=1), values.sum(axis=(1, 2))[:, None]
    return tag


def track(name: str, frames: int) -> TrackFeatures:
    mel = np.arange(frames * 3, dtype=np.float16).reshape(frames, 3) % 1000  # a frame's values tell which it is
    return TrackFeatures(name, mel, 16000, 1, frames * 0.016)


def test_bounded_calls_give_what_one_call_gives():
    tracks = [track("long", 2000), track("short", 50), track("mid", 700)]  # 10, 1 (padded), 3 patches at hop 187
    one_call, bounded = [], []
    whole = predict_tracks(tracks, fingerprint_tagger(one_call), 187, 187)
    cut = predict_tracks(tracks, fingerprint_tagger(bounded), 187, 187, max_patches_per_call=4)
    assert one_call == [14] and bounded == [4, 4, 4, 2]  # one_call: the default bound (512) holds them all
    for a, b, frames in zip(whole, cut, (2000, 50, 700)):
        assert a.track.uri == b.track.uri and a.padded == b.padded == (frames < 187)
        np.testing.assert_array_equal(a.activations, b.activations)
        np.testing.assert_array_equal(a.embeddings, b.embeddings)
        np.testing.assert_array_equal(a.patch_starts, b.patch_starts)
    long = cut[0]
    starts = np.arange(10) * 187
    np.testing.assert_array_equal(long.patch_starts, starts)
    np.testing.assert_array_equal(long.activations[:, 0], tracks[0].mel[starts, 0].astype(np.float32))
    np.testing.assert_array_equal(long.activations[:, 1], tracks[0].mel[starts + 186, 0].astype(np.float32))


class RecordingModel:
    """A LoadedModel's interface: records each call's input shape; outputs identify each patch."""

    device = "CPU"

    def __init__(self):
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.shapes.append(patches.shape)
        return patches[:, :, 0].astype(np.float32), patches.sum(axis=(1, 2), dtype=np.float32)[:, None]


def test_the_model_sees_one_batch_shape_and_padding_is_cut_off():
    from musicnn_beam.models.registry import resolve_model
    from musicnn_beam.transforms.inference import PatchTagger

    recipe = resolve_model("msd-musicnn").recipe
    model = RecordingModel()
    patches = np.random.default_rng(0).random((21, 4, 3)).astype(np.float16)  # 8 + 8 + 5 (padded to 8)
    activations, embeddings = PatchTagger(model, recipe, batch_size=8)(patches)
    assert model.shapes == [(8, 4, 3)] * 3
    assert activations.shape == (21, 4) and embeddings.shape == (21, 1)
    expected = recipe.compress(patches)
    np.testing.assert_array_equal(activations, expected[:, :, 0].astype(np.float32))
    np.testing.assert_array_equal(embeddings[:, 0], expected.sum(axis=(1, 2), dtype=np.float32))


def test_the_model_loads_and_warms_in_the_background_and_a_failed_load_fails_the_run():
    """The worker's model loads on a thread and runs its batch shape once on zeros (the first files
    decode meanwhile); the results are a plain tagger's. A model that cannot load is no track's
    fault: run_inference raises instead of giving every track an InferenceFailed row."""
    from musicnn_beam.models.registry import resolve_model
    from musicnn_beam.transforms.inference import LoadingTagger, ModelLoadFailed, PatchTagger, TaggerModelHandler

    spec = resolve_model("msd-musicnn")
    recipe = spec.recipe
    model = RecordingModel()
    loading = LoadingTagger(lambda: model, recipe, batch_size=8)
    patches = np.random.default_rng(1).random((5, recipe.patch_frames, recipe.n_mels)).astype(np.float16)
    activations, _ = loading(patches)
    assert model.shapes[0] == (8, recipe.patch_frames, recipe.n_mels)  # the warm-up: the one batch shape
    np.testing.assert_array_equal(activations, PatchTagger(RecordingModel(), recipe, batch_size=8)(patches)[0])

    def broken():
        raise OSError("no such SavedModel")

    handler = TaggerModelHandler(spec, patch_hop=recipe.patch_frames)
    with pytest.raises(ModelLoadFailed, match="no such SavedModel"):
        handler.run_inference([track("a", 400), track("b", 300)], LoadingTagger(broken, recipe))
