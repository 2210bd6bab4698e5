"""A run killed at every step of its commit (tests/test_store.py: the same in one process): the store
never shows part of it, whatever instant a reader looks, and the next run repairs it at once and says
so: `completed the commit of run X` once its merge of `current` went through, else `rolled back run X`.
The kill is the real thing (os._exit in the CLI's process, right after the step named), made
deterministic by a `-c` wrapper around the CLI, as tests/decoder_faults.py does: no hook in shipped
code."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from musicnn_beam.store.read import read_table
from musicnn_beam.store.schema import STAGING
from tests.conftest import make_audio
from tests.test_catalogue_store import assert_no_duplicates, current_by_name

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("converted_models")]

ROOT = Path(__file__).resolve().parent.parent
KILLED = 137

# The CLI in a process that dies (as SIGKILL would leave it) right after the commit step named.
STOPPED_CLI = """
import os, sys
sys.path.insert(0, {root!r})
import musicnn_beam.store.commit as commit
real_step = commit._step
def step(name, do):
    done = real_step(name, do)
    if name == {step!r}:
        os._exit({killed})
    return done
commit._step = step
from musicnn_beam.pipeline.cli import console_main
console_main()
"""


def killed_after(step: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", STOPPED_CLI.format(root=str(ROOT), step=step, killed=KILLED), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def catalogue(root: Path) -> Path:
    root.mkdir(parents=True)
    make_audio(root, "a.wav", 41, 3.0, 16000, 1, "wav16")
    make_audio(root, "b.flac", 42, 3.0, 22050, 1, "flac")
    (root / "x.mp3").write_bytes(b"not audio")  # an errors row
    return root


def assert_no_part_of_a_run(output: Path) -> None:
    """The invariant: every `current` row's result has its history rows committed (the README's join
    of `current` with `tracks` returns every tracked row; an error row has its errors row), and a
    tracked file has its patches."""
    tables = {name: read_table(str(output), name).to_pylist() for name in ("current", "tracks", "patches", "errors")}
    history = {name: {(r["uri"], r["model"], r["run_id"]) for r in tables[name]} for name in ("tracks", "patches", "errors")}
    for row in tables["current"]:
        key = (row["uri"], row["model"], row["run_id"])
        if row["status"] == "tracked":
            assert key in history["tracks"] and key in history["patches"], row["uri"]
        elif row["status"] == "error":
            assert key in history["errors"], row["uri"]


@pytest.mark.parametrize("step, repair", [
    ("tracks", "rolled back"), ("patches", "rolled back"), ("errors", "rolled back"),
    ("current", "completed the commit of"), ("runs", None),
])
def test_a_run_killed_after_each_commit_step_is_never_seen_in_part_and_is_repaired_at_once(tmp_path, cli, step, repair):
    music, output = catalogue(tmp_path / "music"), tmp_path / "store"
    killed = killed_after(step, "--input", str(music), "--output", str(output))
    assert killed.returncode == KILLED, killed.stderr[-3000:]
    assert_no_part_of_a_run(output)
    (plan,) = (output / STAGING).iterdir()  # what the killed run left
    run_id = plan.name

    after = cli("--input", str(music), "--output", str(output))
    assert after.returncode == 0, after.stderr[-3000:]
    said = [line for line in after.stdout.splitlines() if line.startswith("musicnn-beam: ") and " run " in line]
    assert said[:-1] == ([f"musicnn-beam: {repair} run {run_id}"] if repair else []), after.stdout
    assert said[-1].startswith("musicnn-beam: run ")  # its own line comes last
    tagged_again = repair == "rolled back"
    assert ("3 listed, 0 skipped, 2 tagged" if tagged_again else "3 listed, 3 skipped, 0 tagged") in said[-1]

    assert_no_part_of_a_run(output)
    assert_no_duplicates(output)
    assert sorted(current_by_name(output)) == ["a.wav", "b.flac", "x.mp3"]
    assert sorted(Path(r["uri"]).name for r in read_table(str(output), "tracks").to_pylist()) == ["a.wav", "b.flac"]
    assert not list((output / STAGING).glob("*"))
