"""A store the run cannot write: a full disk at the commit, a read-only folder, a bucket it may only
read. Each is one line and exit status 4, saying what it left and what to do; a store the run cannot
write at all fails before any tagging. And the run's time, in its line and its runs row, counts
from the launch. Full and read-only disks are real ones (tmpfs, read-only mounts: the tests run as
root); where mounting is not allowed they are skipped."""
from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from musicnn_beam.pipeline import cli as cli_module
from musicnn_beam.store.errors import StoreWriteFailed, write_failed, writes_refused
from musicnn_beam.store.open import check_writable, open_store
from musicnn_beam.store.read import read_table
from musicnn_beam.store.schema import TABLES

ERROR = "musicnn-beam: error: the store could not be written: "


@contextlib.contextmanager
def mounted(folder: Path, *mount_args: str, then: tuple[str, ...] = ()) -> Iterator[Path]:
    """`mount MOUNT_ARGS folder` (then `mount THEN folder`) for the with block; skips the test where
    mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    mounting = subprocess.run(["mount", *mount_args, str(folder)], capture_output=True, text=True)
    if mounting.returncode != 0:
        pytest.skip(f"cannot mount here ({mounting.stderr.strip()})")
    try:
        if then:
            subprocess.run(["mount", *then, str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # lazy: a Beam worker thread may hold a file


def read_only(folder: Path) -> contextlib.AbstractContextManager:
    """The folder, as it is, read-only (a bind mount remounted so): root's writes fail too."""
    return mounted(folder, "--bind", str(folder), then=("-o", "remount,ro,bind"))


def fill(disk: Path, leave: int) -> Path:
    """A file that fills the disk but for `leave` bytes."""
    stat = os.statvfs(disk)
    filler = disk / "filler"
    subprocess.run(["fallocate", "-l", str(stat.f_bavail * stat.f_frsize - leave), str(filler)], check=True)
    return filler


def rows(output: Path) -> dict[str, int]:
    return {name: read_table(str(output), name).num_rows for name in TABLES}


@pytest.fixture
def launches(monkeypatch) -> list:
    """The runs that got past the store's checks to the pipeline (launch: listing, decoding, tagging)."""
    calls = []
    real = cli_module.launch

    def launch(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli_module, "launch", launch)
    return calls


@pytest.mark.integration
@pytest.mark.usefixtures("converted_models")
def test_a_full_disk_at_the_commit_is_one_line_and_the_next_run_completes(tmp_path, wav16k, cli):
    """The disk fills up while the run writes its files: one line naming ENOSPC, exit 4, nothing of
    the run in any table; with space again, the next run tags the file, once."""
    with mounted(tmp_path / "disk", "-t", "tmpfs", "-o", "size=300k", "tmpfs") as disk:
        store = disk / "store"
        open_store(str(store))
        filler = fill(disk, leave=8192)  # the probe fits, the run's Parquet files do not
        full = cli("--input", wav16k, "--output", str(store))
        assert full.returncode == 4, full.stderr
        (line,) = full.stderr.splitlines()
        assert line == (f"{ERROR}no space left on device (ENOSPC) on {store}; nothing of this run is visible; "
                        f"free space there and run again")
        assert rows(store) == dict.fromkeys(TABLES, 0)
        filler.unlink()
        again = cli("--input", wav16k, "--output", str(store))
        assert again.returncode == 0, again.stderr
        assert "1 listed, 0 skipped, 1 tagged" in again.stdout
        assert {name: n > 0 for name, n in rows(store).items()} == {**dict.fromkeys(TABLES, True), "errors": False}
        assert read_table(str(store), "tracks").num_rows == 1


@pytest.mark.integration
@pytest.mark.parametrize("store_there", [True, False], ids=["existing_store", "new_store"])
def test_a_read_only_store_fails_before_any_tagging(store_there, tmp_path, wav16k, cli, launches):
    """A read-only folder, holding a store or empty: the probe fails in the first second, exit 4,
    one line; nothing is listed or tagged (the pipeline never starts)."""
    store = tmp_path / "store"
    store.mkdir()
    if store_there:
        open_store(str(store))
    with read_only(store):
        began = time.monotonic()
        result = cli("--input", wav16k, "--output", str(store))
        took = time.monotonic() - began
    assert result.returncode == 4, result.stderr
    (line,) = result.stderr.splitlines()
    assert line == (f"{ERROR}read-only file system (EROFS) on {store}; nothing was tagged; "
                    f"make it writable and run again")
    assert launches == [] and took < 3, took
    assert {p.name for p in store.iterdir()} == (set(TABLES) if store_there else set())


@pytest.mark.unit
def test_a_bucket_the_run_may_only_read_fails_the_probe(monkeypatch):
    """s3fs says a bucket's AccessDenied as a PermissionError with no errno: it is EACCES."""
    from fsspec.implementations.memory import MemoryFileSystem

    def denied(self, path, value, **kwargs):
        raise PermissionError("Access Denied")

    monkeypatch.setattr(MemoryFileSystem, "pipe_file", denied)
    with pytest.raises(StoreWriteFailed) as failed:
        check_writable("memory://bucket/store")
    assert str(failed.value) == ("the store could not be written: permission denied (EACCES) on "
                                 "memory://bucket/store; nothing was tagged; make it writable and run again")


@pytest.mark.unit
@pytest.mark.parametrize("failure, refused", [
    (OSError(28, "No space left on device"), "no space left on device (ENOSPC)"),
    (RuntimeError("OSError: [Errno 30] Read-only file system: 'x' [while running 'Commit/WriteTracks']"),
     "read-only file system (EROFS)"),
    (Exception("Generic LocalFileSystem error: Unable to copy: Disk quota exceeded (os error 122)"),
     "disk quota exceeded (EDQUOT)"),
    (RuntimeError("OSError: [Errno 2] No such file or directory"), None),
    (ValueError("no code"), None),
])
def test_a_write_failure_is_known_by_its_code_wherever_it_says_it(failure, refused):
    """Python's OSError, Beam's text of a worker's, delta-rs's Rust error: the same code, the same words."""
    assert writes_refused(failure) == (refused is not None)
    if refused:
        assert f"could not be written: {refused} on out;" in str(write_failed("out", failure, "nothing was tagged"))


@pytest.mark.integration
@pytest.mark.usefixtures("converted_models")
def test_the_runs_time_counts_from_its_launch(tmp_path, wav16k, cli, monkeypatch):
    """A store slow to open (storage stalls before the pipeline starts): that time is the run's, in
    its line and in runs.wall_s, which count from the launch to the commit."""
    real_open, slept = cli_module.open_store, []

    def slow_open(*args, **kwargs):
        slept.append(time.time())
        time.sleep(2)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(cli_module, "open_store", slow_open)
    output = tmp_path / "store"
    result = cli("--input", wav16k, "--output", str(output))
    assert result.returncode == 0, result.stderr
    (run,) = read_table(str(output), "runs").to_pylist()
    assert run["started"].timestamp() <= slept[0]
    assert run["wall_s"] == pytest.approx(run["finished"].timestamp() - run["started"].timestamp(), abs=1e-3)
    assert run["wall_s"] > 2
    assert f"finished in {run['wall_s']:.1f} s" in result.stdout
