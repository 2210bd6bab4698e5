"""A model's metadata decides its features: what FeatureRecipe reads, and what it refuses."""
from __future__ import annotations

import copy

import pytest

from musicnn_beam.models.recipe import FeatureRecipe, RecipeError
from musicnn_beam.models.registry import known_models, resolve_model

pytestmark = pytest.mark.unit

MUSICNN = FeatureRecipe(sample_rate=16000, n_fft=512, hop_length=256, n_mels=96, f_min=0.0, f_max=8000.0,
                        patch_frames=187, compression="log10(10000 * float16(mel) + 1)")


def metadata_with(path: str, value) -> dict:
    """msd-musicnn's metadata with one field (dotted path) set, or removed when value is ...."""
    metadata = copy.deepcopy(resolve_model("msd-musicnn").metadata)
    *parents, key = path.split(".")
    node = metadata
    for parent in parents:
        node = node[parent]
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return metadata


@pytest.mark.parametrize("name", known_models())
def test_every_shipped_model_states_musicnns_recipe(name):
    assert resolve_model(name).recipe == MUSICNN


def test_derived_values():
    assert MUSICNN.seconds_per_frame == 0.016
    assert MUSICNN.seconds_per_patch == pytest.approx(2.992)
    assert [MUSICNN.n_frames(n) for n in (0, 255, 256, 320000)] == [1, 1, 2, 1251]


def test_the_free_numbers_are_read():
    metadata = metadata_with("features.hop_length", 128)
    metadata["features"].update(n_fft=1024, n_mels=64, fmax=11025.0)
    metadata.update(sample_rate=22050, patch_frames=128)
    recipe = FeatureRecipe.from_metadata(metadata)
    assert (recipe.sample_rate, recipe.n_fft, recipe.hop_length, recipe.n_mels, recipe.f_max, recipe.patch_frames) == \
        (22050, 1024, 128, 64, 11025.0, 128)
    assert recipe.seconds_per_patch == pytest.approx(128 * 128 / 22050)


@pytest.mark.parametrize("path,value,named", [
    ("features.mel_scale", "htk", "features.mel_scale"),
    ("features.mel_norm", None, "features.mel_norm"),
    ("features.window", "hamming", "features.window"),
    ("features.center", False, "features.center"),
    ("features.pad_mode", "reflect", "features.pad_mode"),
    ("features.power", 1.0, "features.power"),
    ("features.type", "mfcc", "features.type"),
    ("features.compression", "log1p(mel)", "features.compression"),
    ("features.hop_length", 0, "hop_length"),
    ("features.n_mels", 96.5, "n_mels"),
    ("features.n_fft", ..., "n_fft"),
    ("sample_rate", "16k", "sample_rate"),
    ("patch_frames", -1, "patch_frames"),
    ("features.fmax", 9000.0, "mel range"),
    ("features", ..., "features"),
])
def test_a_recipe_we_cannot_compute_is_refused(path, value, named):
    with pytest.raises(RecipeError) as caught:
        FeatureRecipe.from_metadata(metadata_with(path, value))
    message = str(caught.value)
    assert message.startswith("msd-musicnn: ") and named in message and "\n" not in message
