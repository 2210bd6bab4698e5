"""Shared fixtures: converted models (`make test` builds them), loaded once per session and only for
the tests that ask; audio is generated here."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from musicnn_beam.demo.encode import write_audio
from musicnn_beam.demo.synth import synth_music
from musicnn_beam.models.recipe import FeatureRecipe
from musicnn_beam.models.registry import known_models, models_dir, resolve_model


@pytest.fixture(scope="session")
def converted_models() -> Path:
    missing = [m for m in known_models() if not (models_dir() / m / "model.json").is_file()]
    assert not missing, f"models not converted in {models_dir()}: {missing}; run the tests with `make test`"
    return models_dir()


@pytest.fixture(scope="session")
def loaded_model(converted_models) -> Callable:
    """loaded_model(name, precision="float32") -> models.serving.LoadedModel, each loaded once a session."""
    from musicnn_beam.models.serving import LoadedModel

    cache: dict[tuple[str, str], LoadedModel] = {}

    def load(name: str, precision: str = "float32") -> LoadedModel:
        if (name, precision) not in cache:
            cache[name, precision] = LoadedModel(resolve_model(name).local_path(), precision)
        return cache[name, precision]

    return load


@pytest.fixture(scope="session")
def recipe() -> FeatureRecipe:
    """MusiCNN's feature recipe, as msd-musicnn's metadata states it."""
    return resolve_model("msd-musicnn").recipe


def make_audio(directory: Path, name: str, seed: int, seconds: float, rate: int, channels: int, codec: str) -> str:
    path = directory / name
    write_audio(path, synth_music(seed, seconds, rate, channels), rate, codec)
    return str(path)


@pytest.fixture(scope="session")
def wav16k(tmp_path_factory) -> str:
    """20 s of music-like audio, 16 kHz mono 16-bit wav: the input on which we must equal the original."""
    return make_audio(tmp_path_factory.mktemp("wav16k"), "music_16k.wav", 7, 20.0, 16000, 1, "wav16")
