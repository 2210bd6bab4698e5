"""Inputs: files, folders (recursively, audio files only) and globs on any fsspec filesystem, and
manifests (a list of URIs, with optional track ids); each file's version from its listing
(version_of); and how the names of one file become one input.

Every URI is written one way (normalise_uri), and the names that reach the same file (through
--input, manifests, `..`, a symlink) are merged into one input (merge_names): a file is tagged once.
"""
from __future__ import annotations

import csv
import io
import os
import posixpath
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import fsspec
import pyarrow.parquet as pq
from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from musicnn_beam.transforms.audio import AUDIO_EXTENSIONS
from musicnn_beam.transforms.errors import TaggingError
from musicnn_beam.transforms.records import ErrorRecord, InputFile

_LOCAL_PROTOCOLS = (None, "file", "local")

_GLOB_CHARS = set("*?[")


class ManifestError(ValueError):
    pass


class NoMatch(ValueError):
    """A pattern that names no file."""


@dataclass(frozen=True)
class InputSpec:
    """What the user named: a file/folder/glob pattern, or a manifest."""

    pattern: Optional[str] = None
    manifest: Optional[str] = None


def expand_spec(spec: InputSpec) -> Iterator[tuple[str, InputFile]]:
    """InputSpec -> (file identity, InputFile) for every file it names, keyed for the plan's join."""
    files = read_manifest(spec.manifest) if spec.manifest else expand_input(spec.pattern)
    for file in files:
        yield file_identity(file.uri), file


def normalise_uri(uri: str) -> str:
    """The one spelling of an input's URI.

    Local paths become absolute and normalised (`dir/../dir/a.mp3` -> `/abs/dir/a.mp3`, `file://`
    dropped, `~` expanded). Remote URIs get their filesystem's main protocol (gcs:// -> gs://,
    s3a:// -> s3://) and the path as fsspec writes it; `..` stays, since in a bucket it is part of a key.
    """
    uri = uri.strip()
    protocol, _ = split_protocol(uri)
    if protocol in _LOCAL_PROTOCOLS:
        return os.path.normpath(LocalFileSystem._strip_protocol(uri))
    cls = fsspec.get_filesystem_class(protocol)
    main = cls.protocol if isinstance(cls.protocol, str) else cls.protocol[0]
    return f"{main}://{cls._strip_protocol(uri)}"


def is_local(uri: str) -> bool:
    """A path or file:// URI on this machine's disks (not a bucket)."""
    return split_protocol(uri)[0] in _LOCAL_PROTOCOLS


def file_identity(uri: str) -> str:
    """What two names of the same file share: a local file's real path (symlinks resolved), a
    remote object's normalised URI. uri: as normalise_uri writes it."""
    return os.path.realpath(uri) if is_local(uri) else uri


def merge_names(names: Iterable[InputFile]) -> InputFile | ErrorRecord:
    """All the names one file was given -> one input: the first URI in sort order, with the track_id
    the names agree on (a name without one, e.g. from --input, agrees with any) and the first
    version, size and duration one gives. Different track_ids for one file give one ConflictingTrackId error instead:
    no id is chosen silently."""
    names = sorted(names, key=lambda n: n.uri)
    uri = names[0].uri
    version, size, duration_s = (next((getattr(n, f) for n in names if getattr(n, f) is not None), None)
                                 for f in ("version", "size", "duration_s"))
    ids = sorted({n.track_id for n in names if n.track_id is not None})
    if len(ids) > 1:
        conflict = TaggingError("ConflictingTrackId", f"named with {len(ids)} track_ids: {', '.join(map(repr, ids))}")
        return ErrorRecord.of(InputFile(uri, version=version), conflict)
    return InputFile(uri, ids[0] if ids else None, version, size, duration_s)


def _is_audio_name(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in AUDIO_EXTENSIONS


def expand_input(pattern: str) -> Iterator[InputFile]:
    """A file, folder or glob (`**` included) -> the files it names, sorted, each with its version
    from the listing (version_of: no request per file).

    Files and globs are taken as given (a non-audio file named explicitly gets an error row); a
    folder is walked recursively and only files with an audio extension are taken. Raises
    NoMatch when nothing matches: a run that saw no file must not take the catalogue for empty.
    """
    fs, root = url_to_fs(pattern)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]

    def uri(path: str) -> str:
        return normalise_uri(path if protocol in _LOCAL_PROTOCOLS else f"{protocol}://{path}")

    if any(c in pattern for c in _GLOB_CHARS):
        found = {p: info for p, info in fs.glob(root, detail=True).items() if info["type"] == "file"}
    elif fs.isdir(root):
        found = {p: info for p, info in fs.find(root, detail=True).items() if _is_audio_name(p)}
    elif fs.exists(root):
        found = {root: fs.info(root)}
    else:
        found = {}
    if not found:
        raise NoMatch(f"no file matches {pattern!r}")
    yield from (InputFile(uri(p), None, version_of(found[p]), found[p].get("size")) for p in sorted(found))


def check_input(pattern: str) -> None:
    """What the launcher checks of a local pattern before the run, without listing it (the run lists
    it once): the file or folder exists, or for a glob, the folder above its first wildcard. A bucket
    pattern is checked by the run's listing: any request here would be one more per pattern against
    a store that may be slow or failing, and a folder check there is a listing. Raises NoMatch."""
    if not is_local(pattern):
        return
    fs, root = url_to_fs(pattern)
    if any(c in pattern for c in _GLOB_CHARS):
        first = min(root.find(c) for c in _GLOB_CHARS if c in root)
        root = root[:first].rsplit("/", 1)[0] if "/" in root[:first] else ""
        if root and not fs.isdir(root):
            raise NoMatch(f"no file matches {pattern!r}: {root} is not a folder")
    elif not fs.exists(root):
        raise NoMatch(f"no file matches {pattern!r}")


def read_manifest_columns(manifest: str) -> list[str]:
    """A manifest's columns, from its header alone (the launcher's check; the run reads it whole).
    Raises ManifestError without a `uri` column, OSError when it cannot be read."""
    suffix = posixpath.splitext(manifest)[1].lower()
    if suffix == ".parquet":
        with fsspec.open(manifest, "rb") as f:
            columns = pq.read_schema(f).names
    elif suffix == ".csv":
        with fsspec.open(manifest, "r", newline="") as f:
            columns = next(csv.reader([f.readline()]), [])
    else:
        with fsspec.open(manifest, "r") as f:
            f.read(1)
        columns = ["uri"]
    if "uri" not in columns:
        raise ManifestError(f"manifest {manifest} has no `uri` column (columns: {', '.join(map(str, columns))})")
    return columns


def read_manifest(manifest: str) -> Iterator[InputFile]:
    """A manifest -> its inputs, in order, URIs normalised (relative paths are taken from the
    working directory).

    .txt: one URI a line (blank lines and lines starting with # are skipped); .csv (with a header
    row) and .parquet: a `uri` column, an optional `track_id` column, carried into every output, and
    an optional `version` column: what identifies the file's content (any string that changes when
    it does), and an optional `duration_s` column (audio seconds: what a dry run adds up). A file whose version the manifest does not give gets one from the storage
    (with_version: a request per file).
    """
    suffix = posixpath.splitext(manifest)[1].lower()
    if suffix == ".parquet":
        with fsspec.open(manifest, "rb") as f:
            table = pq.ParquetFile(f).read()  # not read_table: it imports pyarrow.dataset (0.2 s)
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
    if not any(row["uri"] is not None and str(row["uri"]).strip() for row in rows):
        raise NoMatch(f"manifest {manifest} lists no input")
    for row in rows:
        if row["uri"] is not None and str(row["uri"]).strip():
            track_id, version = row.get("track_id"), row.get("version")
            yield InputFile(normalise_uri(str(row["uri"])), None if track_id in (None, "") else str(track_id),
                            None if version in (None, "") else str(version),
                            duration_s=_optional_float(row.get("duration_s"), manifest))


def _optional_float(value, manifest: str) -> Optional[float]:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ManifestError(f"manifest {manifest}: duration_s {value!r} is not a number") from None


def with_version(file: InputFile) -> InputFile:
    """A manifest's file without a version -> with the storage's (one metadata request; a file that
    cannot be looked up keeps none, and its read fails with the reason)."""
    if file.version is not None:
        return file
    try:
        fs, path = url_to_fs(file.uri)
        info = fs.info(path)
        return file._replace(version=version_of(info), size=info.get("size"))
    except Exception:  # noqa: BLE001 - reading it will say what is wrong
        return file


def version_of(info: dict) -> Optional[str]:
    """An fsspec listing entry -> the object's version, from what the listing holds (no request):
    a GCS generation, an S3 ETag with the size, a local size with the mtime in microseconds."""
    if info.get("generation") is not None:
        return f"generation={info['generation']}"
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"etag={str(etag).strip(chr(34))};size={info.get('size')}"
    if info.get("mtime") is not None:
        return f"size={info.get('size')};mtime_us={round(float(info['mtime']) * 1e6)}"
    return None
