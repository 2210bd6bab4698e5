"""Where models live and what they are: a model is a SavedModel folder with its metadata (model.json).

`--model` takes a name (its metadata ships with the package; its SavedModel is looked up under
$MUSICNN_BEAM_MODELS, where `make models` converts them) or the URI of a SavedModel folder holding
model.json: local, gs://, s3:// or any fsspec URI. A worker copies a remote model to local disk once
(per machine) and loads it from there. Nothing downstream knows which model it runs: it asks the
metadata.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from musicnn_beam.models.recipe import FeatureRecipe

METADATA_DIR = Path(__file__).parent / "metadata"
METADATA_FILE = "model.json"
DEFAULT_MODEL = "msd-musicnn"
MODELS_ENV = "MUSICNN_BEAM_MODELS"
CACHE_ENV = "MUSICNN_BEAM_CACHE"
# Each SavedModel has a serving signature per precision: float32 gives the original's numbers; in
# the others the convolutions and matmuls run in that dtype (bfloat16: CPUs with AVX512-BF16/AMX;
# float16: GPUs).
PRECISIONS = ("float32", "bfloat16", "float16")


def signature_name(precision: str) -> str:
    return "serving_default" if precision == "float32" else f"serving_{precision}"


class ModelNotFound(ValueError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    """A model as the user named it (`source`: a name or a SavedModel URI) and its metadata."""

    source: str
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def classes(self) -> list[str]:
        return self.metadata["classes"]

    @functools.cached_property
    def recipe(self) -> FeatureRecipe:
        """The features this model takes (RecipeError if this code cannot compute them)."""
        return FeatureRecipe.from_metadata(self.metadata)

    def fingerprint(self) -> str:
        """What the model's results depend on: a hash of its variables and its metadata (16 hex
        digits). Results of another checkpoint or conversion are not this model's. A named model that
        is only where the workers run (e.g. in a Dataflow image) is fingerprinted by its metadata
        alone ("metadata-..." )."""
        digest = hashlib.sha256(json.dumps(self.metadata, sort_keys=True).encode())
        try:
            variables = Path(self.local_path()) / "variables"
        except ModelNotFound:
            return "metadata-" + digest.hexdigest()[:16]
        for path in sorted(variables.iterdir()):
            digest.update(path.name.encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()[:16]

    @property
    def is_named(self) -> bool:
        return self.source in known_models()

    def local_path(self) -> str:
        """The SavedModel folder on this machine: a named model under $MUSICNN_BEAM_MODELS (read
        where this runs, e.g. on a worker), a local folder as is, a remote one copied here once."""
        if self.is_named:
            folder = models_dir() / self.source
            if not (folder / METADATA_FILE).is_file():
                raise ModelNotFound(f"model {self.source!r} is not converted in {models_dir()}: run `make models`")
            return str(folder)
        fs, path = url_to_fs(self.source)
        if _is_local(fs):
            return path
        return _copy_once(fs, path, self.source)


def known_models() -> list[str]:
    return sorted(p.stem for p in METADATA_DIR.glob("*.json"))


def models_dir() -> Path:
    default = Path(__file__).resolve().parent.parent / "build" / "models"
    return Path(os.environ.get(MODELS_ENV, default))


def _is_local(fs) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return "file" in protocols or "local" in protocols


def _copy_once(fs, path: str, uri: str) -> str:
    """Copy a remote SavedModel folder to the local cache, atomically, unless already there."""
    cache = Path(os.environ.get(CACHE_ENV, Path(tempfile.gettempdir()) / "musicnn-beam-models"))
    target = cache / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if (target / METADATA_FILE).is_file():
        return str(target)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".incoming-"))
    fs.get(path.rstrip("/") + "/", str(staging), recursive=True)
    try:
        os.rename(staging, target)
    except OSError:  # another process of this machine finished first
        if not (target / METADATA_FILE).is_file():
            raise
    return str(target)


def resolve_model(name_or_uri: str) -> ModelSpec:
    """A model name (see known_models()) or the URI of a SavedModel folder holding model.json."""
    if name_or_uri in known_models():
        metadata = json.loads((METADATA_DIR / f"{name_or_uri}.json").read_text())
        return ModelSpec(source=name_or_uri, metadata=metadata)
    uri = name_or_uri.rstrip("/")
    try:
        with fsspec.open(f"{uri}/{METADATA_FILE}", "r") as f:
            metadata = json.load(f)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"unknown model {name_or_uri!r}: use one of {', '.join(known_models())} "
                            f"or a SavedModel folder with {METADATA_FILE} ({type(exc).__name__})") from exc
    fs, path = url_to_fs(uri)
    return ModelSpec(source=os.path.abspath(path) if _is_local(fs) else uri, metadata=metadata)
