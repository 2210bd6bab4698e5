"""Where models live and what they are: a model is a SavedModel folder with its metadata (model.json).

`--model` takes a name (looked up under MUSICNN_BEAM_MODELS, where `make models` converts them) or the
path of a SavedModel folder. Nothing downstream knows which model it runs: it asks the metadata.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METADATA_DIR = Path(__file__).parent / "metadata"
METADATA_FILE = "model.json"
DEFAULT_MODEL = "msd-musicnn"
MODELS_ENV = "MUSICNN_BEAM_MODELS"


class ModelNotFound(ValueError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    """A model ready to load: its SavedModel folder and its metadata."""

    path: str
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def classes(self) -> list[str]:
        return self.metadata["classes"]

    @property
    def patch_frames(self) -> int:
        return self.metadata["patch_frames"]

    @property
    def n_mels(self) -> int:
        return self.metadata["features"]["n_mels"]


def known_models() -> list[str]:
    return sorted(p.stem for p in METADATA_DIR.glob("*.json"))


def models_dir() -> Path:
    default = Path(__file__).resolve().parent.parent / "build" / "models"
    return Path(os.environ.get(MODELS_ENV, default))


def resolve_model(name_or_path: str) -> ModelSpec:
    """A model name (see known_models()) or a SavedModel folder holding model.json -> ModelSpec."""
    folder = Path(name_or_path)
    if not (folder / METADATA_FILE).is_file():
        if name_or_path not in known_models():
            raise ModelNotFound(
                f"unknown model {name_or_path!r}: use one of {', '.join(known_models())} or a SavedModel folder with {METADATA_FILE}")
        folder = models_dir() / name_or_path
        if not (folder / METADATA_FILE).is_file():
            raise ModelNotFound(f"model {name_or_path!r} is not converted in {models_dir()}: run `make models`")
    metadata = json.loads((folder / METADATA_FILE).read_text())
    return ModelSpec(path=str(folder.resolve()), metadata=metadata)
