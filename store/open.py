"""Opening a store for a run: OUTPUT holds only this store's tables (or nothing); the missing tables
are created, an older store's upgraded (ADDED_COLUMNS), a damaged one refused (store.check), and what
killed runs left is finished (store.recovery) before the run reads `current`."""
from __future__ import annotations

import time
from typing import NamedTuple, Optional

import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from musicnn_beam.store.check import refuse_damaged, schema_damage
from musicnn_beam.store.errors import StoreError, one_line, write_failed, writes_refused
from musicnn_beam.store.location import delta_table, filesystem, join, storage_options
from musicnn_beam.store.plan import new_run_id
from musicnn_beam.store.read import current_version
from musicnn_beam.store.recovery import recover
from musicnn_beam.store.schema import STAGING, TABLES


class OpenedStore(NamedTuple):
    """The store as a run found it: the version of `current` its plan reads (None: no store yet, a
    dry run on a new output), and what it repaired of interrupted runs (a line each, store.recovery)."""

    version: Optional[int]
    repairs: list[str]


def open_store(output: str, create: bool = True) -> OpenedStore:
    """Check OUTPUT is (or can become) this store, create the missing tables, upgrade older ones and
    complete or roll back what interrupted runs left. create=False (a dry run) changes nothing.
    Raises StoreError, one line, whatever went wrong."""
    try:
        if not _check_tables(output, create):
            return OpenedStore(None, [])
        repairs = recover(output) if create else []  # may commit (a plan, a vacuum): the version is read after it
        return OpenedStore(current_version(output), repairs)
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the storage raises, the user gets one line
        raise StoreError(f"output {output!r} is not writable as a store: {one_line(exc)}") from exc


def _check_tables(output: str, create: bool) -> bool:
    """Refuse what is not this store's; create (create=True) and upgrade its tables. Returns whether
    `current` exists (create=False: a dry run on a new output has none)."""
    fs, root = filesystem(output)
    if fs.exists(root) and not fs.isdir(root):
        raise StoreError(f"{output} is a file, not a folder for the store's tables")
    entries = fs.ls(root, detail=False) if fs.exists(root) else []
    for entry in entries:
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name not in TABLES and name != STAGING:
            raise StoreError(f"{output} holds {name!r}, which is not a table of this store "
                             f"({', '.join(TABLES)}): choose another --output")
    for name, schema in TABLES.items():
        uri, folder = join(output, name), join(root, name)
        entries = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(folder, detail=False)] if fs.isdir(folder) else []
        if entries and "_delta_log" not in entries:  # empty: a run started at the same moment is creating it
            raise StoreError(f"{uri} is not a Delta table (no _delta_log): not a store this tool wrote")
        if not create and not entries:
            if name == "current":
                return False
            continue
        if entries:  # before anything reads or upgrades it (and before recovery's vacuum trusts its snapshot)
            refuse_damaged(output, name)
        have = pa.schema(_open_or_create(uri, schema).schema().to_arrow()).names
        wrong = schema_damage(name, have)
        if wrong:
            raise StoreError(f"{uri} {wrong}")
        if len(have) < len(schema) and create:  # a dry run reads only PLAN_COLUMNS, which every version has
            _add_embedding(output)
    return True


def _add_embedding(output: str) -> None:
    """Upgrade the `current` table of a store written before it had `embedding`: add the column and
    fill it for the tracked rows from their tracks rows (same uri, model and run), in one commit, so
    that similarity search finds every track without a join against the history. A run that read
    `current` before this commit loses its race (StoreConflict), as against any other commit."""
    tracks = delta_table(join(output, "tracks")).to_pyarrow_dataset()
    source = tracks.scanner(columns=["uri", "model", "run_id", "embedding"]).to_reader()  # streamed
    try:
        (delta_table(join(output, "current"))
         .merge(source, "t.uri = s.uri AND t.model = s.model AND t.run_id = s.run_id AND t.status = 'tracked'",
                source_alias="s", target_alias="t", merge_schema=True)
         .when_matched_update({"embedding": "s.embedding"}).execute())
    except Exception:  # noqa: BLE001 - another run upgraded it first (its commit conflicts with ours)
        if "embedding" not in pa.schema(delta_table(join(output, "current")).schema().to_arrow()).names:
            raise


def _open_or_create(uri: str, schema: pa.Schema):
    """The Delta table at uri, created when there is none. Two runs started at once on a new store
    both create it: one wins, the other opens what the winner wrote (once its first commit is there)."""
    from deltalake import DeltaTable
    for attempt in range(10):
        try:
            return delta_table(uri)
        except Exception:  # noqa: BLE001 - no table (yet): each storage says so its own way
            try:
                return DeltaTable.create(uri, schema, storage_options=storage_options(uri))
            except Exception:  # noqa: BLE001 - created meanwhile by another run: open it on the next try
                time.sleep(0.1 * (attempt + 1))
    return delta_table(uri)


def check_writable(output: str) -> None:
    """Write and remove a probe object in OUTPUT's _staging, so that a store the run cannot write
    (read-only, no permission, a bucket it may only read) fails before any tagging, not at the
    commit. Raises StoreWriteFailed (the storage refuses writes), or StoreError (OUTPUT cannot be a
    folder: a file is in its way)."""
    fs, root = filesystem(output)
    staging = join(root, STAGING)
    folder = join(staging, f"probe-{new_run_id()}")  # a folder, as a run's: recovery reads it as one without a plan
    try:
        if isinstance(fs, LocalFileSystem):  # a bucket has no folders (and makedirs would create the bucket)
            fs.makedirs(folder, exist_ok=True)
        fs.pipe_file(join(folder, "probe"), b"probe")
        fs.rm(folder, recursive=True)
    except Exception as exc:  # noqa: BLE001 - whatever the storage raises, the user gets one line
        if writes_refused(exc):
            raise write_failed(output, exc, "nothing was tagged") from exc
        raise StoreError(f"output {output!r} is not writable as a store: {one_line(exc)}") from exc
