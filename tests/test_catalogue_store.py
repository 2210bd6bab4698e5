"""The store across runs, on local disk (S3: tests/test_storage.py): a second run tags only what
changed, marks what left, and keeps the history; a killed run and two runs at once leave every file
exactly once in the current view and no duplicate row anywhere."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicnn_beam.store.read import read_table
from musicnn_beam.store.recovery import ORPHAN_HOURS
from musicnn_beam.store.schema import HISTORY, TABLES
from tests.conftest import make_audio

# Runs call the CLI's main() in this process (the `cli` fixture); a killed run and two runs at once are processes.
pytestmark = pytest.mark.usefixtures("converted_models")


def tables(output: Path) -> dict[str, list[dict]]:
    return {name: read_table(str(output), name).to_pylist() for name in TABLES}


def names(rows: list[dict]) -> list[str]:
    return sorted(Path(r["uri"]).name for r in rows)


def current_by_name(output: Path) -> dict[str, dict]:
    rows = read_table(str(output), "current").to_pylist()
    assert len({(r["uri"], r["model"]) for r in rows}) == len(rows), "one current row per (uri, model)"
    return {Path(r["uri"]).name: r for r in rows}


def assert_no_duplicates(output: Path) -> None:
    t = tables(output)
    for name, key in (("tracks", ("uri", "run_id")), ("errors", ("uri", "run_id")),
                      ("patches", ("uri", "run_id", "patch")), ("runs", ("run_id",))):
        keys = [tuple(r[k] for k in key) for r in t[name]]
        assert len(keys) == len(set(keys)), f"duplicate rows in {name}"
    run_ids = {r["run_id"] for r in t["runs"]}
    for name in ("tracks", "errors", "patches", "current"):
        assert {r["run_id"] for r in t[name]} <= run_ids, f"{name} holds rows of a run that did not finish"


def catalogue(root: Path) -> Path:
    root.mkdir(parents=True)
    make_audio(root, "a.mp3", 21, 4.0, 44100, 2, "mp3")
    make_audio(root, "b.flac", 22, 3.0, 22050, 1, "flac")
    make_audio(root, "c.wav", 23, 3.0, 16000, 1, "wav16")
    make_audio(root, "d.wav", 24, 2.0, 16000, 1, "wav16")
    (root / "x.mp3").write_bytes(b"not audio")
    return root


def run_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [l for l in result.stdout.splitlines() if l.startswith("musicnn-beam: run ")]
    return line


@pytest.mark.integration
def test_a_second_run_tags_only_what_changed(tmp_path, cli):
    music, output = catalogue(tmp_path / "music"), tmp_path / "store"
    first = run_line(cli("--input", str(music), "--output", str(output)))
    print(first)
    assert "5 listed, 0 skipped, 4 tagged" in first and "1 failed (NotAudio 1)" in first and "0 removed" in first
    before = current_by_name(output)
    assert {n: r["status"] for n, r in before.items()} == {"a.mp3": "tracked", "b.flac": "tracked", "c.wav": "tracked",
                                                            "d.wav": "tracked", "x.mp3": "error"}

    make_audio(music, "e.wav", 25, 3.0, 16000, 1, "wav16")  # two new files
    make_audio(music, "f.flac", 26, 3.0, 44100, 2, "flac")
    make_audio(music, "c.wav", 27, 3.5, 16000, 1, "wav16")  # one changed
    (music / "d.wav").unlink()  # one deleted
    second = run_line(cli("--input", str(music), "--output", str(output)))
    print(second)
    assert "6 listed, 3 skipped, 3 tagged" in second and ", 0 failed, 1 removed" in second

    t = tables(output)
    first_run, second_run = sorted(r["run_id"] for r in t["runs"])
    assert {r["run_id"]: (r["listed"], r["skipped"], r["tagged"], r["failed"], r["removed"]) for r in t["runs"]} == \
        {first_run: (5, 0, 4, 1, 0), second_run: (6, 3, 3, 0, 1)}
    assert names(r for r in t["tracks"] if r["run_id"] == second_run) == ["c.wav", "e.wav", "f.flac"]
    assert names(t["tracks"]) == ["a.mp3", "b.flac", "c.wav", "c.wav", "d.wav", "e.wav", "f.flac"]  # history kept
    now = current_by_name(output)
    assert {n: (r["status"], r["run_id"]) for n, r in now.items()} == {
        "a.mp3": ("tracked", first_run), "b.flac": ("tracked", first_run), "c.wav": ("tracked", second_run),
        "d.wav": ("removed", second_run), "e.wav": ("tracked", second_run), "f.flac": ("tracked", second_run),
        "x.mp3": ("error", first_run)}
    assert now["c.wav"]["version"] != before["c.wav"]["version"]
    assert now["a.mp3"]["top_tags"] == before["a.mp3"]["top_tags"]
    assert_no_duplicates(output)

    third = run_line(cli("--input", str(music), "--output", str(output)))  # nothing changed: nothing opened
    assert "6 listed, 6 skipped, 0 tagged" in third and "0 removed" in third
    retag = run_line(cli("--input", str(music), "--output", str(output), "--retag"))
    assert "6 listed, 0 skipped, 5 tagged" in retag and "1 failed (NotAudio 1)" in retag
    assert_no_duplicates(output)


@pytest.mark.integration
def test_a_store_holding_something_else_is_refused(tmp_path, cli):
    music = catalogue(tmp_path / "music")
    for name, make in (("foreign", lambda p: (p / "notes.txt").write_text("mine")),
                       ("plain-parquet", lambda p: (p / "tracks").mkdir() or (p / "tracks" / "part-0.parquet").write_bytes(b"PAR1"))):
        output = tmp_path / name
        output.mkdir()
        make(output)
        result = cli("--input", str(music), "--output", str(output))
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "not a table of this store" in result.stderr or "not a Delta table" in result.stderr


@pytest.mark.e2e
def test_a_killed_run_then_a_new_one_ends_with_every_file_once(tmp_path, cli):
    music, output = catalogue(tmp_path / "music"), tmp_path / "store"
    for i in range(4):  # enough work that the kill lands midway
        make_audio(music, f"long{i}.wav", 30 + i, 30.0, 16000, 1, "wav16")
    command = [sys.executable, "-m", "musicnn_beam.pipeline", "--input", str(music), "--output", str(output)]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((output / "patches").glob("part-*.parquet")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)  # the first bundle's files are written: tagging is under way
    assert run.poll() is None, "the run ended before it could be killed"
    run.send_signal(signal.SIGKILL)
    run.wait()
    orphans = sorted(p.name for name in HISTORY for p in (output / name).glob("part-*.parquet"))
    assert orphans, "the killed run wrote no file"
    assert read_table(str(output), "tracks").num_rows == 0  # invisible: no commit names them
    assert read_table(str(output), "runs").num_rows == 0

    result = run_line(cli("--input", str(music), "--output", str(output)))
    assert "9 listed, 0 skipped, 8 tagged" in result and "1 failed (NotAudio 1)" in result
    assert sorted(current_by_name(output)) == sorted(p.name for p in music.iterdir())
    assert_no_duplicates(output)
    assert len(read_table(str(output), "tracks")) == 8

    old = time.time() - (ORPHAN_HOURS + 1) * 3600  # a day later, the next run removes them
    for name in HISTORY:
        for path in (output / name).glob("part-*.parquet"):
            if path.name in orphans:
                os.utime(path, (old, old))
    run_line(cli("--input", str(music), "--output", str(output)))
    left = {p.name for name in HISTORY for p in (output / name).glob("part-*.parquet")}
    assert not left & set(orphans)
    assert len(read_table(str(output), "tracks")) == 8


@pytest.mark.e2e
def test_two_runs_at_once_never_mix_or_duplicate(tmp_path, cli):
    music, output = catalogue(tmp_path / "music"), tmp_path / "store"
    command = [sys.executable, "-m", "musicnn_beam.pipeline", "--input", str(music), "--output", str(output)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in results)
    for code, out, err in results:
        print(code, out[-500:], err[-500:])
    assert codes in ([0, 0], [0, 3]), results
    for code, _, err in results:
        if code == 3:
            (line,) = err.strip().splitlines()
            assert line.startswith("musicnn-beam: error: another run committed to ") and line.endswith(
                "nothing of this run was committed; run again (it tags only what is still missing)"), line
    assert_no_duplicates(output)
    assert sorted(current_by_name(output)) == sorted(p.name for p in music.iterdir())
    assert names(read_table(str(output), "tracks").to_pylist()) == ["a.mp3", "b.flac", "c.wav", "d.wav"]
    again = run_line(cli("--input", str(music), "--output", str(output)))
    assert "5 listed, 5 skipped, 0 tagged" in again


@pytest.mark.integration
def test_a_glob_that_matches_nothing_stops_the_run_before_any_commit(tmp_path, cli):
    """The launcher does not list inputs (the run lists them once): a glob whose folder exists but
    that matches nothing stops the run in its listing, before a file could be marked removed."""
    music, output = catalogue(tmp_path / "music"), tmp_path / "store"
    run_line(cli("--input", str(music), "--output", str(output)))
    result = cli("--input", str(music / "*.ogg"), "--output", str(output))
    assert result.returncode == 2
    assert result.stderr.strip() == f"musicnn-beam: error: no file matches {str(music / '*.ogg')!r}"
    assert len(read_table(str(output), "runs")) == 1
    assert {r["status"] for r in read_table(str(output), "current").to_pylist()} == {"tracked", "error"}


@pytest.mark.integration
def test_tags_of_two_models_live_side_by_side(tmp_path, cli):
    """A run of another model tags everything for that model and leaves the first model's rows alone;
    each model's next run skips its own."""
    music, output = catalogue(tmp_path / "music"), tmp_path / "store"
    run_line(cli("--input", str(music), "--output", str(output)))
    before = {(r["uri"], r["model"]): r for r in read_table(str(output), "current").to_pylist()}
    other = run_line(cli("--input", str(music), "--output", str(output), "--model", "mtt-vgg"))
    assert "5 listed, 0 skipped, 4 tagged" in other and "0 removed" in other
    rows = read_table(str(output), "current").to_pylist()
    assert sorted({r["model"] for r in rows}) == ["msd-musicnn", "mtt-vgg"] and len(rows) == 10
    assert {(r["uri"], r["model"]): r for r in rows if r["model"] == "msd-musicnn"} == before
    again = run_line(cli("--input", str(music), "--output", str(output), "--model", "mtt-vgg"))
    assert "5 listed, 5 skipped, 0 tagged" in again
    assert_no_duplicates(output)


@pytest.mark.integration
def test_the_skip_decision_holds_for_100000_files(tmp_path, cli):
    """A store of 100,000 tracks and a manifest of the same files, unchanged: every file is skipped,
    none is lost or opened. (In Beam's multi_threading mode the join's data was garbled at this
    size: files were tagged again, or the run read garbage; see pipeline/options.py.)"""
    from tests.synthetic_store import write, write_manifest
    from musicnn_beam.models.registry import resolve_model

    model = resolve_model("msd-musicnn")
    write(tmp_path / "store", 100_000, n_runs=1, fingerprint=model.fingerprint())
    write_manifest(tmp_path / "catalogue.parquet", 100_000)
    line = run_line(cli("--manifest", str(tmp_path / "catalogue.parquet"), "--output", str(tmp_path / "store")))
    assert "100000 listed, 100000 skipped, 0 tagged (0.0 audio s), 0 failed, 0 removed" in line, line


@pytest.mark.integration
def test_a_dry_run_says_what_a_run_would_do_and_changes_nothing(tmp_path, cli):
    """--dry-run lists and joins, prints the plan (read from the pipeline's metrics) and writes nothing:
    not on a new output, not in an existing store."""
    music, output = catalogue(tmp_path / "music"), tmp_path / "store"

    def megabytes(*names: str) -> str:
        return f"{sum((music / n).stat().st_size for n in names) / 1e6:.1f} MB to read"

    fresh = cli("--input", str(music), "--output", str(output), "--dry-run")
    assert fresh.returncode == 0 and fresh.stderr == "", fresh.stderr
    every = megabytes("a.mp3", "b.flac", "c.wav", "d.wav", "x.mp3")
    assert fresh.stdout.strip() == (f"musicnn-beam: dry run: 5 listed: 5 to tag (5 new, {every}), 0 skipped, "
                                    f"0 to mark removed; nothing tagged or written")
    (tmp_path / "m.csv").write_text(f"uri,duration_s\n{music / 'a.mp3'},3600\n{music / 'b.flac'},1800\n"
                                    f"{music / 'c.wav'},\n")
    timed = cli("--manifest", str(tmp_path / "m.csv"), "--output", str(output), "--dry-run")
    # Sizes need a request per file of a manifest: it gives them where it has no version (a lookup then).
    assert timed.stdout.strip() == (f"musicnn-beam: dry run: 3 listed: 3 to tag (3 new, "
                                    f"{megabytes('a.mp3', 'b.flac', 'c.wav')}, 1.50 audio h for 2 of them), "
                                    f"0 skipped, 0 to mark removed; nothing tagged or written"), timed.stdout
    assert not output.exists()

    run_line(cli("--input", str(music), "--output", str(output)))
    make_audio(music, "e.wav", 25, 3.0, 16000, 1, "wav16")
    make_audio(music, "c.wav", 27, 3.5, 16000, 1, "wav16")
    (music / "d.wav").unlink()
    files_before = sorted(str(p) for p in output.rglob("*"))
    planned = cli("--input", str(music), "--output", str(output), "--dry-run")
    assert planned.stdout.strip() == (f"musicnn-beam: dry run: 5 listed: 2 to tag (1 new, 1 changed, "
                                      f"{megabytes('e.wav', 'c.wav')}), 3 skipped, 1 to mark removed; "
                                      f"nothing tagged or written"), planned.stdout
    assert sorted(str(p) for p in output.rglob("*")) == files_before
    done = run_line(cli("--input", str(music), "--output", str(output)))
    assert "5 listed, 3 skipped, 2 tagged" in done and "1 removed" in done  # what the dry run said
