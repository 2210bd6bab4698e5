"""The Delta store's commit protocol on local disk (S3: tests/test_storage.py; a killed CLI:
tests/test_store_kills.py): a run's files are invisible until committed, every `current` row's
history is committed before it, a repeated commit is a no-op, of two runs that planned on one snapshot
of `current` only the first commits and the other takes its history back, an interrupted run's plan
is completed or rolled back by the next run at once, a transient storage error is retried, a folder
holding anything else is refused, and what cannot be read or written is one line."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import musicnn_beam.store.commit as commit
from musicnn_beam.store.commit import apply_plan, commit_run, remove_plan
from musicnn_beam.store.errors import StoreConflict, StoreError, StoreUnreadable, one_line
from musicnn_beam.store.location import join
from musicnn_beam.store.open import check_writable, open_store
from musicnn_beam.store.read import read_table
from musicnn_beam.store.recovery import ORPHAN_HOURS, recover
from musicnn_beam.store.schema import CURRENT_SCHEMA, HISTORY, STAGING, TABLES, TRACKS_SCHEMA

pytestmark = pytest.mark.unit  # delta-rs on local disk, in this process


def staged(output: str) -> list[str]:
    """What a store's _staging holds (the folder may stay, empty, once every run is committed)."""
    return os.listdir(join(output, STAGING)) if os.path.isdir(join(output, STAGING)) else []


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
    version = open_store(output).version
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
    version = open_store(output).version
    first, second = a_run(output, "R1"), a_run(output, "R2")
    commit_run(output, version, run_row("R1"), first)
    with pytest.raises(StoreConflict, match="another run committed to .* nothing of this run was committed"):
        commit_run(output, version, run_row("R2"), second)
    assert [r["run_id"] for r in rows(output, "current")] == ["R1"]
    assert [r["run_id"] for r in rows(output, "tracks")] == ["R1"]
    assert [r["run_id"] for r in rows(output, "runs")] == ["R1"]
    assert not os.path.exists(join(output, STAGING, "R2"))  # its plan went with its history


def a_plan(output: str, run_id: str, version: int, **where) -> dict:
    """A run's files and its commit plan as commit_run writes them (where: its host and pid)."""
    plan = {"run": run_row(run_id), "state_version": version, **where,
            "files": [*a_run(output, run_id), commit.write_runs_file(output, run_row(run_id))]}
    commit._write_plan(output, plan)
    return plan


def run_ids(output: str, table: str) -> list[str]:
    return sorted(r["run_id"] for r in rows(output, table))


def a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def stop_after(monkeypatch, step_name: str) -> type:
    """The commit stops (as a killed run would) after the step named, as tests/test_store_kills.py
    kills the CLI there."""
    real_step = commit._step

    class Killed(BaseException):
        pass

    def step(name, do):
        done = real_step(name, do)
        if name == step_name:
            raise Killed(name)
        return done
    monkeypatch.setattr(commit, "_step", step)
    return Killed


def assert_current_has_its_history(output: str) -> None:
    """The invariant: every `current` row's run has its history committed: the README's join of
    `current` with `tracks` returns every tracked row."""
    tracks = {(r["uri"], r["model"], r["run_id"]) for r in rows(output, "tracks")}
    errors = {(r["uri"], r["model"], r["run_id"]) for r in rows(output, "errors")}
    for row in rows(output, "current"):
        key = (row["uri"], row["model"], row["run_id"])
        assert key in (tracks if row["status"] == "tracked" else errors if row["status"] == "error" else {key}), row


@pytest.mark.parametrize("step", ["plan", "tracks", "patches", "errors", "current", "runs"])
def test_a_run_stopped_after_any_commit_step_shows_no_part_and_the_next_run_repairs_it_at_once(tmp_path, monkeypatch, step):
    output = str(tmp_path / "store")
    version = open_store(output).version
    Killed = stop_after(monkeypatch, step)
    with pytest.raises(Killed):
        commit_run(output, version, run_row("R1"), a_run(output, "R1"))
    monkeypatch.undo()
    assert_current_has_its_history(output)
    assert run_ids(output, "current") in ([], ["R1"])

    merged = step in ("current", "runs")  # its process (this one: it opens the store again) has stopped
    repairs = [] if step == "runs" else ["completed the commit of run R1"] if merged else ["rolled back run R1"]
    assert open_store(output).repairs == repairs
    assert_current_has_its_history(output)
    expected = ["R1"] if merged else []
    assert run_ids(output, "current") == run_ids(output, "tracks") == run_ids(output, "runs") == expected
    assert not staged(output)
    assert recover(output) == []  # nothing left to do


def test_a_plan_whose_merge_did_not_go_through_waits_while_its_process_may_live(tmp_path):
    """Rolled back at once when its process, on this machine, is gone; from another machine (or by a
    process still alive) only a day later: until then no runs row names its history rows."""
    output = str(tmp_path / "store")
    version = open_store(output).version
    gone = a_plan(output, "R1", version, host=commit.socket.gethostname(), pid=a_dead_pid())
    elsewhere = a_plan(output, "R2", version, host="another-machine", pid=1)
    alive = a_plan(output, "R3", version, host=commit.socket.gethostname(), pid=os.getppid())
    for plan in (gone, elsewhere, alive):  # killed after its history appends
        for name in HISTORY:
            commit._append(output, name, [w for w in plan["files"] if w["table"] == name], plan["run"]["run_id"])
    assert run_ids(output, "tracks") == ["R1", "R2", "R3"] and run_ids(output, "runs") == []
    assert recover(output) == ["rolled back run R1"]
    assert run_ids(output, "tracks") == ["R2", "R3"]
    day_later = time.time() + (ORPHAN_HOURS + 1) * 3600
    assert sorted(recover(output, now=day_later)) == ["rolled back run R2", "rolled back run R3"]
    assert rows(output, "tracks") == [] and rows(output, "current") == [] and rows(output, "runs") == []
    assert not staged(output)


def test_a_run_that_gave_up_is_repaired_by_the_next_run_of_the_same_process(tmp_path, monkeypatch):
    output = str(tmp_path / "store")
    version = open_store(output).version
    monkeypatch.setattr(commit, "RETRY_WAITS_S", (0.0,))

    def reset(*args):
        raise ConnectionResetError("connection reset by peer")
    monkeypatch.setattr(commit, "_append", reset)
    with pytest.raises(ConnectionResetError):
        commit_run(output, version, run_row("R1"), a_run(output, "R1"))
    monkeypatch.undo()
    assert open_store(output).repairs == ["rolled back run R1"]
    assert rows(output, "tracks") == rows(output, "current") == rows(output, "runs") == []


def test_two_processes_completing_one_plan_at_once_add_nothing_twice(tmp_path, monkeypatch):
    """The worst interleaving of two completers: the second looks at each table before the first
    commits there, then commits too (the same files, by path; its merge finds its transaction)."""
    output = str(tmp_path / "store")
    version = open_store(output).version
    plan = a_plan(output, "R1", version)
    apply_plan(output, plan)  # the first
    real_committed, looked = commit.committed, set()

    def looked_before_the_first_committed(uri, run_id):
        if uri in looked:
            return real_committed(uri, run_id)
        looked.add(uri)
        return False
    monkeypatch.setattr(commit, "committed", looked_before_the_first_committed)
    apply_plan(output, plan)  # the second
    assert run_ids(output, "tracks") == run_ids(output, "current") == run_ids(output, "runs") == ["R1"]


def test_a_transient_storage_error_in_a_commit_step_is_retried(tmp_path, monkeypatch):
    """A reset while appending, and a merge whose reply is lost after it landed: the run commits,
    once, and its merge's retry finds its transaction there (no conflict with itself)."""
    output = str(tmp_path / "store")
    version = open_store(output).version
    monkeypatch.setattr(commit, "RETRY_WAITS_S", (0.0, 0.0))
    real_append, real_merge, failed = commit._append, commit._merge_current, []

    def append_reset_once(output, name, files, run_id):
        if name == "patches" and not failed:
            failed.append(name)
            raise ConnectionResetError("connection reset by peer")
        return real_append(output, name, files, run_id)

    def merge_reply_lost(output, plan, files):
        landed = real_merge(output, plan, files)
        if landed:
            raise OSError("Generic S3 error: error sending request: connection closed")
        return landed
    monkeypatch.setattr(commit, "_append", append_reset_once)
    monkeypatch.setattr(commit, "_merge_current", merge_reply_lost)
    commit_run(output, version, run_row("R1"), a_run(output, "R1"))
    assert failed == ["patches"]
    assert run_ids(output, "tracks") == run_ids(output, "current") == run_ids(output, "runs") == ["R1"]
    assert not staged(output)


def test_a_lasting_storage_error_is_not_retried(tmp_path, monkeypatch):
    output = str(tmp_path / "store")
    version = open_store(output).version
    calls = []

    def disk_full(*args):
        calls.append(args)
        raise OSError("Generic LocalFileSystem error: No space left on device (os error 28)")
    monkeypatch.setattr(commit, "_append", disk_full)
    with pytest.raises(OSError, match="No space left"):
        commit_run(output, version, run_row("R1"), a_run(output, "R1"))
    assert len(calls) == 1


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
    assert open_store(str(root)).version == 0
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
    assert open_store(output, create=False).version == before  # a dry run: nothing written
    assert "embedding" not in DeltaTable(join(output, "current")).schema().to_arrow().names
    version = open_store(output).version
    assert version == before + 1  # one commit
    assert {r["uri"]: r["embedding"] for r in rows(output, "current")} == \
        {"/a.mp3": [1.0, 2.0], "/c.mp3": None, "/x.mp3": None}  # the same run's tracks row; none where not tracked
    assert open_store(output).version == version  # upgraded once

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


def test_staging_stays_once_empty_so_that_no_run_removes_it_under_another(tmp_path):
    """A run's probe and its commit leave _staging in place, empty: removing it raced another run
    creating its folder there (its mkdir found no _staging: "not writable as a store", exit 2, seen
    with two runs at once on a new store)."""
    output = str(tmp_path / "store")
    check_writable(output)
    assert os.path.isdir(join(output, STAGING)) and not staged(output)
    os.makedirs(join(output, STAGING, "R9", "current"))
    remove_plan(output, "R9")
    assert os.path.isdir(join(output, STAGING)) and not staged(output)
