"""`python -m pipeline.similar STORE URI [--k 10] [--model NAME]`: the nearest tracks of one track, or
of an audio file that is not in the store (tagged here first); the search is reports/similar.py."""
from __future__ import annotations

import os
import sys
from typing import Optional

import numpy as np

from musicnn_beam.models.registry import DEFAULT_MODEL
from musicnn_beam.pipeline.args import ArgumentParser, UsageError, positive_int
from musicnn_beam.pipeline.console import exit_after_output, quiet_console
from musicnn_beam.reports.similar import SimilarError, format_neighbours, nearest, settings_of, tracked_embeddings
from musicnn_beam.store.errors import StoreUnreadable

PROG = "musicnn-beam similar"


def _query(output: str, uri: str, model: Optional[str]) -> tuple[str, str, np.ndarray, bool]:
    """-> the URI as the store writes it, the model's name, the query embedding, and whether the file
    was tagged here (it is not a tracked track of the store). model: --model, None for the store's."""
    from musicnn_beam.transforms.sources import normalise_uri

    uri = normalise_uri(uri)
    stored = tracked_embeddings(output, uri)
    name = _model_name(model) if model is not None else (
        DEFAULT_MODEL if DEFAULT_MODEL in stored or not stored else sorted(stored)[0])
    if name in stored:
        return uri, name, stored[name], False
    not_in_store = f"{uri} is not a tracked track of model {name} in {output}"
    return uri, name, _tag_here(output, uri, model or name, not_in_store), True


def _model_name(model: str) -> str:
    """--model -> the name the store's rows carry: a name as is, a SavedModel URI's from its metadata."""
    from musicnn_beam.models.registry import ModelNotFound, resolve_model

    if "://" not in model and "/" not in model and os.sep not in model:
        return model
    try:
        return resolve_model(model).name
    except ModelNotFound as exc:
        raise SimilarError(str(exc)) from exc


def _tag_here(output: str, uri: str, model: str, not_in_store: str) -> np.ndarray:
    """The embedding of the audio file at uri, tagged in this process with the settings of the store's
    tracks of that model (patch hop, precision), so that it compares with them as a run's would."""
    from fsspec.core import url_to_fs

    from musicnn_beam.models.recipe import RecipeError
    from musicnn_beam.models.registry import ModelNotFound, resolve_model
    from musicnn_beam.transforms.errors import TaggingError

    try:
        fs, path = url_to_fs(uri)
        missing = not fs.exists(path)  # said before TensorFlow loads (seconds) for a typo
    except Exception:  # noqa: BLE001 - the storage's own error: decoding below says it as a run would
        missing = False
    if missing:
        raise SimilarError(f"{not_in_store}, and there is no such file")
    try:
        spec = resolve_model(model)
        settings = settings_of(output, spec.name)
        patch_hop = int(settings["patch_hop"]) if "patch_hop" in settings else None
        from musicnn_beam.models.quiet import native_stderr_silenced

        quiet_console()  # TensorFlow's notes are not this command's output (a run hides them too)
        with native_stderr_silenced():
            from musicnn_beam.pipeline.tag_one import tag_one
        row = tag_one(uri, spec, patch_hop=patch_hop, precision=settings.get("precision", "float32"))
    except (TaggingError, ModelNotFound, RecipeError) as exc:
        raise SimilarError(f"{not_in_store}, and it cannot be tagged: {exc}") from exc
    return np.asarray(row["embedding"], dtype=np.float32)


def main(argv: Optional[list[str]] = None) -> int:
    parser = ArgumentParser(prog="python -m pipeline.similar", description=__doc__.split(": ", 1)[1].split(";")[0])
    parser.add_argument("store", metavar="STORE", help="the store (a local folder or a URI: s3://..., gs://...)")
    parser.add_argument("uri", metavar="URI", help="a track of the store, or an audio file (local or a URI) to tag now")
    parser.add_argument("--k", type=positive_int, default=10, help="how many neighbours (default: 10)")
    parser.add_argument("--model", default=None,
                        help=f"the model whose embeddings to compare (default: the one that tagged URI in the "
                             f"store, else {DEFAULT_MODEL}); to tag a file now, a name or a SavedModel URI")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        uri, model, query, tagged_now = _query(args.store, args.uri, args.model)
        neighbours = nearest(args.store, model, query, args.k, exclude=uri)
    except (UsageError, SimilarError, StoreUnreadable) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    note = " (tagged now, not in the store)" if tagged_now else ""
    print(f"nearest of {uri}{note}, model {model}:")
    print(format_neighbours(neighbours))
    return 0


if __name__ == "__main__":
    exit_after_output(main())
