"""Model resolution: names, local folders and remote SavedModels copied once per machine."""
from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from musicnn_beam.models import registry
from musicnn_beam.models.registry import ModelNotFound, resolve_model


@pytest.mark.integration
def test_names_resolve_to_packaged_metadata_and_converted_folders(converted_models):
    spec = resolve_model("mtt-vgg")
    assert spec.is_named and spec.name == "mtt-vgg"
    assert spec.local_path() == str(registry.models_dir() / "mtt-vgg")


@pytest.mark.unit
def test_unknown_model_is_refused():
    with pytest.raises(ModelNotFound, match="unknown model"):
        resolve_model("no-such-model")


@pytest.mark.integration
def test_remote_model_is_copied_once_per_machine(tmp_path, monkeypatch, converted_models):
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    memory = fsspec.filesystem("memory")
    memory.put(str(registry.models_dir() / "msd-musicnn"), "/models/msd-musicnn", recursive=True)
    copies = []
    real_get = type(memory).get
    monkeypatch.setattr(type(memory), "get", lambda self, *a, **k: (copies.append(a), real_get(self, *a, **k))[1])

    spec = resolve_model("memory://models/msd-musicnn")
    assert spec.name == "msd-musicnn" and not spec.is_named
    first, second = spec.local_path(), spec.local_path()
    assert first == second and len(copies) == 1
    assert Path(first).parent == tmp_path / "cache" and (Path(first) / "saved_model.pb").is_file()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".incoming-")]
