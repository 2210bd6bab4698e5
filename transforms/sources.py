"""Inputs: files, folders (recursively, audio files only) and globs on any fsspec filesystem, and
manifests (a list of URIs, with optional track ids)."""
from __future__ import annotations

import csv
import io
import posixpath
from typing import Iterator

import fsspec
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from transforms.audio import AUDIO_EXTENSIONS
from transforms.records import InputFile

_GLOB_CHARS = set("*?[")


class ManifestError(ValueError):
    pass


def _is_audio_name(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in AUDIO_EXTENSIONS


def expand_input(pattern: str) -> Iterator[str]:
    """A file, folder or glob (`**` included) -> the URIs it names, sorted.

    Files and globs are taken as given (a non-audio file named explicitly gets an error row); a
    folder is walked recursively and only files with an audio extension are taken.
    """
    fs, root = url_to_fs(pattern)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]

    def uri(path: str) -> str:
        return path if protocol in ("file", "local") else f"{protocol}://{path}"

    if any(c in pattern for c in _GLOB_CHARS):
        paths = [p for p, info in fs.glob(root, detail=True).items() if info["type"] == "file"]
    elif fs.isdir(root):
        paths = [p for p in fs.find(root) if _is_audio_name(p)]
    elif fs.exists(root):
        paths = [root]
    else:
        paths = []
    yield from (uri(p) for p in sorted(paths))


def read_manifest(manifest: str) -> Iterator[InputFile]:
    """A manifest -> its inputs, in order.

    .txt: one URI a line (blank lines and lines starting with # are skipped); .csv (with a header
    row) and .parquet: a `uri` column and an optional `track_id` column, carried into every output.
    """
    suffix = posixpath.splitext(manifest)[1].lower()
    if suffix == ".parquet":
        with fsspec.open(manifest, "rb") as f:
            table = pq.read_table(f)
        rows = table.to_pylist()
        columns = table.column_names
    elif suffix == ".csv":
        with fsspec.open(manifest, "r", newline="") as f:
            reader = csv.DictReader(io.StringIO(f.read()))
            rows, columns = list(reader), reader.fieldnames or []
    else:
        with fsspec.open(manifest, "r") as f:
            lines = [line.strip() for line in f]
        rows, columns = [{"uri": line} for line in lines if line and not line.startswith("#")], ["uri"]
    if "uri" not in columns:
        raise ManifestError(f"manifest {manifest} has no `uri` column (columns: {', '.join(map(str, columns))})")
    for row in rows:
        if row["uri"]:
            track_id = row.get("track_id")
            yield InputFile(str(row["uri"]).strip(), None if track_id in (None, "") else str(track_id))
