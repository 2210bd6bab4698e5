"""The Delta store's commit protocol on local disk (S3: tests/test_storage.py): a run's files are
invisible until committed, a repeated commit is a no-op, of two runs that planned on one snapshot of
`current` only the first commits, a killed run's plan is completed or its files removed, a folder
holding anything else is refused, and what cannot be read or written is one line."""
from __future__ import annotations

import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from musicnn_beam.store.commit import apply_plan, commit_run
from musicnn_beam.store.errors import StoreConflict, StoreError, StoreUnreadable, one_line
from musicnn_beam.store.location import join
from musicnn_beam.store.open import open_store
from musicnn_beam.store.read import read_table
from musicnn_beam.store.recovery import ORPHAN_HOURS, RECOVER_AFTER_S, recover
from musicnn_beam.store.schema import CURRENT_SCHEMA, STAGING, TABLES, TRACKS_SCHEMA

pytestmark = pytest.mark.unit  # delta-rs on local disk, in this process


def write_files(output: str, table: str, rows: list[dict], run_id: str) -> dict:
    """A worker's file (as sinks.WriteBundleFiles writes it) -> what it reports."""
    folder = join(output, STAGING, run_id, "current") if table == "current" else join(output, table)
    os.makedirs(folder, exist_ok=True)
    path = f"{folder}/part-{run_id}-{len(os.listdir(folder))}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLES[table]), path)
    return {"table": table, "path": path, "size": os.path.getsize(path), "rows": len(rows)}


def run_row(run_id: str) -> dict:
    return {"run_id": run_id, "started": time.time() - 5, "finished": time.time(), "status": "finished",
            "model": "m", "fingerprint": "f", "settings": "s", "package_version": "0", "runner": "test",
            "listed": 1, "skipped": 0, "tagged": 1, "failed": 0, "failed_by_kind": {}, "removed": 0,
            "audio_s": 3.0, "wall_s": 5.0, "classes": ["rock"]}


def a_run(output: str, run_id: str, uri: str = "/a.mp3") -> list[dict]:
    track = {"uri": uri, "track_id": None, "n_patches": 1, "padded": False, "duration_s": 3.0, "sample_rate": 16000,
             "channels": 1, "activations": [0.5], "embedding": [0.25], "top_tags": ["rock"], "model": "m",
             "version": "v1", "run_id": run_id}
    current = {"uri": uri, "model": "m", "status": "tracked", "track_id": None, "version": "v1", "fingerprint": "f",
               "settings": "s", "run_id": run_id, "top_tags": ["rock"], "activations": [0.5], "duration_s": 3.0,
               "error": None, "message": None, "embedding": [0.25]}
    return [write_files(output, "tracks", [track], run_id), write_files(output, "current", [current], run_id)]


def rows(output: str, table: str) -> list[dict]:
    return read_table(output, table).to_pylist()


def test_files_are_invisible_until_committed_and_a_repeated_commit_is_a_no_op(tmp_path):
    output = str(tmp_path / "store")
    version = open_store(output)
    written = a_run(output, "R1")
    assert rows(output, "tracks") == [] and rows(output, "current") == []
    commit_run(output, version, run_row("R1"), written)
    assert [r["run_id"] for r in rows(output, "tracks")] == ["R1"]
    plan = {"run": run_row("R1"), "state_version": version, "files": written}
    apply_plan(output, plan)  # a retried finalisation
    assert len(rows(output, "tracks")) == len(rows(output, "current")) == len(rows(output, "runs")) == 1
    assert not os.path.exists(join(output, STAGING, "R1"))
    assert read_table(output, "tracks").schema == TRACKS_SCHEMA


def test_of_two_runs_planning_on_one_snapshot_only_the_first_commits(tmp_path):
    output = str(tmp_path / "store")
    version = open_store(output)
    first, second = a_run(output, "R1"), a_run(output, "R2")
    commit_run(output, version, run_row("R1"), first)
    with pytest.raises(StoreConflict, match="another run committed to .* nothing of this run was committed"):
        commit_run(output, version, run_row("R2"), second)
    assert [r["run_id"] for r in rows(output, "current")] == ["R1"]
    assert [r["run_id"] for r in rows(output, "tracks")] == ["R1"]
    assert [r["run_id"] for r in rows(output, "runs")] == ["R1"]


def test_a_run_killed_after_its_decisive_commit_is_completed_by_the_next(tmp_path):
    output = str(tmp_path / "store")
    version = open_store(output)
    written = a_run(output, "R1")
    plan = {"run": run_row("R1"), "state_version": version, "files": written}
    plan_path = join(output, STAGING, "R1", "plan.json")
    with open(plan_path, "w") as f:
        json.dump(plan, f)
    current_only = {**plan, "files": [w for w in written if w["table"] == "current"]}
    apply_plan(output, current_only)  # the `current` merge went through, then the run was killed
    os.makedirs(os.path.dirname(plan_path), exist_ok=True)
    with open(plan_path, "w") as f:
        json.dump(plan, f)
    assert rows(output, "tracks") == []
    assert recover(output) == []  # too recent: its own run may still be finishing it
    later = time.time() + RECOVER_AFTER_S + 1
    assert recover(output, now=later) == ["R1"]
    assert [r["run_id"] for r in rows(output, "tracks")] == ["R1"]
    assert len(rows(output, "current")) == len(rows(output, "runs")) == 1


def test_what_a_run_that_never_committed_left_is_removed_a_day_later(tmp_path):
    output = str(tmp_path / "store")
    open_store(output)
    written = a_run(output, "R1")  # killed before its commit
    recover(output)
    assert all(os.path.exists(w["path"]) for w in written)  # it might still be running
    day_old = time.time() - (ORPHAN_HOURS + 1) * 3600
    for w in written:
        os.utime(w["path"], (day_old, day_old))
    recover(output)
    assert not any(os.path.exists(w["path"]) for w in written)
    assert not os.path.exists(join(output, STAGING, "R1"))


@pytest.mark.parametrize("make, message", [
    (lambda root: (root / "notes.txt").write_text("mine"), "holds 'notes.txt', which is not a table of this store"),
    (lambda root: (root / "tracks").mkdir() or (root / "tracks" / "part-0.parquet").write_bytes(b"PAR1"),
     "is not a Delta table"),  # e.g. the plain Parquet output of an earlier version
    (lambda root: root.rmdir() or root.write_text("a file"), "is a file"),
])
def test_a_folder_holding_something_else_is_refused(tmp_path, make, message):
    root = tmp_path / "store"
    root.mkdir()
    make(root)
    with pytest.raises(StoreError, match=message):
        open_store(str(root))


def test_a_table_with_other_columns_is_refused(tmp_path):
    from deltalake import write_deltalake

    write_deltalake(str(tmp_path / "store" / "runs"), pa.table({"x": [1]}))
    with pytest.raises(StoreError, match="has columns x, not this store's runs table's"):
        open_store(str(tmp_path / "store"))


def test_an_empty_table_folder_is_one_being_created_not_a_foreign_one(tmp_path):
    """Two runs starting at once on a new store: one has made `errors/` but not yet its log when
    the other looks. The other must open the store, not refuse it as not ours."""
    root = tmp_path / "store"
    (root / "errors").mkdir(parents=True)
    assert open_store(str(root)) == 0
    assert (root / "errors" / "_delta_log").is_dir()


def test_a_store_written_before_current_had_embeddings_is_upgraded_when_a_run_opens_it(tmp_path):
    """`current` gained `embedding` (similarity search reads it there): an older store's is added and
    filled from each tracked row's tracks row, once, by the first run that opens it; a dry run changes
    nothing; the runs after it write the column."""
    from deltalake import DeltaTable, write_deltalake

    output = str(tmp_path / "store")
    old_current = pa.schema([f for f in CURRENT_SCHEMA if f.name != "embedding"])
    tracks = [{"uri": u, "track_id": None, "n_patches": 1, "padded": False, "duration_s": 3.0, "sample_rate": 16000,
               "channels": 1, "activations": [0.5], "embedding": e, "top_tags": ["rock"], "model": "m",
               "version": "v1", "run_id": r}
              for u, e, r in (("/a.mp3", [0.0, 1.0], "R0"), ("/a.mp3", [1.0, 2.0], "R1"), ("/c.mp3", [3.0, 4.0], "R1"))]
    base = {"model": "m", "track_id": None, "version": "v1", "fingerprint": "f", "settings": "s", "run_id": "R1",
            "top_tags": None, "activations": None, "duration_s": None, "error": None, "message": None}
    current = [{**base, "uri": "/a.mp3", "status": "tracked", "top_tags": ["rock"], "activations": [0.5], "duration_s": 3.0},
               {**base, "uri": "/c.mp3", "status": "removed"},
               {**base, "uri": "/x.mp3", "status": "error", "error": "NotAudio", "message": "no"}]
    for name, schema in TABLES.items():
        table = {"tracks": pa.Table.from_pylist(tracks, schema=schema),
                 "current": pa.Table.from_pylist(current, schema=old_current)}.get(name, schema.empty_table())
        write_deltalake(join(output, name), table)
    before = DeltaTable(join(output, "current")).version()

    assert [r["embedding"] for r in rows(output, "current")] == [None] * 3  # readable before the upgrade
    assert open_store(output, create=False) == before  # a dry run: nothing written
    assert "embedding" not in DeltaTable(join(output, "current")).schema().to_arrow().names
    version = open_store(output)
    assert version == before + 1  # one commit
    assert {r["uri"]: r["embedding"] for r in rows(output, "current")} == \
        {"/a.mp3": [1.0, 2.0], "/c.mp3": None, "/x.mp3": None}  # the same run's tracks row; none where not tracked
    assert open_store(output) == version  # upgraded once

    commit_run(output, version, run_row("R2"), a_run(output, "R2", uri="/b.mp3"))
    assert {r["uri"]: r["embedding"] for r in rows(output, "current")} == \
        {"/a.mp3": [1.0, 2.0], "/b.mp3": [0.25], "/c.mp3": None, "/x.mp3": None}


def test_an_error_with_delta_rs_colour_codes_is_one_clean_line():
    exc = OSError("Generic LocalFileSystem error:\n  \x1b[1;31mPermission denied\x1b[0m (os error 13)\n")
    assert one_line(exc) == "OSError: Generic LocalFileSystem error: Permission denied (os error 13)"


def test_a_table_that_cannot_be_read_is_one_line_naming_it(tmp_path):
    missing = str(tmp_path / "nothing")
    with pytest.raises(StoreUnreadable) as raised:
        read_table(missing, "current")
    message = str(raised.value)
    assert message.startswith(f"cannot read {missing}/current: ") and "\n" not in message and "\x1b" not in message


def test_whatever_the_storage_raises_when_a_run_opens_the_store_is_one_line(tmp_path, monkeypatch):
    import musicnn_beam.store.open as opening

    def storage_fails(output):
        raise OSError("upload failed:\n\x1b[31mslow down\x1b[0m")

    monkeypatch.setattr(opening, "recover", storage_fails)
    output = str(tmp_path / "store")
    with pytest.raises(StoreError, match=r"^output '.*/store' is not writable as a store: OSError: upload failed: slow down$"):
        open_store(output)
