"""A damaged store is refused, never read as empty or partial: a log entry garbled or cut, a data file
a table's log names deleted or truncated. The run says so in one line naming the table and the damage,
exit status 2, before its plan reads anything (nothing is re-tagged or skipped on its basis); `python
-m pipeline.store check STORE` says what is damaged per table, or that the store is sound."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from musicnn_beam.pipeline import store as store_command
from musicnn_beam.store.read import open_table
from musicnn_beam.store.schema import TABLES
from tests.conftest import in_process, make_audio

ERROR = "musicnn-beam: error: the store is damaged: "


@pytest.fixture(scope="module")
def sound(tmp_path_factory, converted_models) -> tuple[Path, str]:
    """A store a real run of one short wav wrote (each test damages a copy), and that wav."""
    from musicnn_beam.pipeline.cli import main

    folder = tmp_path_factory.mktemp("damage")
    wav = make_audio(folder, "a.wav", 3, 4.0, 16000, 1, "wav16")
    assert in_process(main, ["--input", wav, "--output", str(folder / "store")]) == 0
    return folder / "store", wav


@pytest.fixture
def store(sound, tmp_path) -> Path:
    shutil.copytree(sound[0], tmp_path / "store")
    return tmp_path / "store"


def check(command, store: Path):
    return command(store_command.main, "check", str(store))


def newest_entry(store: Path, table: str) -> Path:
    return sorted((store / table / "_delta_log").glob("*.json"))[-1]


def data_file(store: Path, table: str) -> Path:
    (path,) = open_table(str(store), table).file_uris()
    return Path(path)


def log_entries(store: Path) -> dict[str, list[str]]:
    return {name: sorted(p.name for p in (store / name / "_delta_log").iterdir()) for name in TABLES}


def refused(cli, store: Path, wav: str, table: str, damage: str) -> None:
    """The run refuses the store in one line naming the table and its damage, exit 2, and commits
    nothing to any table (the old code re-tagged or skipped, and committed that run)."""
    before = log_entries(store)
    result = cli("--input", wav, "--output", str(store))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"{ERROR}{store}/{table}: {damage}; run python -m pipeline.store check {store}"]
    assert "tagged" not in result.stdout
    assert log_entries(store) == before


@pytest.mark.integration
@pytest.mark.parametrize("garble, damage", [
    (lambda text: text.replace('{"add":', '{"adx":'), 'line 2 is not a Delta action ("adx")'),
    (lambda text: "\n".join(text.splitlines()[:2])[:-40], "line 2 does not parse as JSON"),
], ids=["add_garbled", "entry_cut"])
def test_a_garbled_log_entry_is_refused_not_read_as_empty(garble, damage, store, sound, cli, command):
    """`add` garbled to `adx` in current's newest entry: delta-rs drops the line and reads `current`
    as empty, so the old code re-tagged the file (tracks: 2 rows). Now: refused, and check names it."""
    entry = newest_entry(store, "current")
    entry.write_text(garble(entry.read_text()))
    refused(cli, store, sound[1], "current", f"_delta_log/{entry.name} {damage}")
    checked = check(command, store)
    assert checked.returncode == 2
    assert checked.stdout.splitlines()[:2] == [f"{store}/current: _delta_log/{entry.name} {damage}",
                                               f"{store}: 5 tables, 3 files, damaged: current"]


@pytest.mark.integration
def test_a_missing_data_file_is_refused(store, sound, cli, command):
    """A Parquet file tracks' log names, deleted: the old code skipped the file (exit 0) and left a
    store deltalake cannot read. Now: refused naming tracks; check says the file is missing."""
    missing = data_file(store, "tracks")
    missing.unlink()
    refused(cli, store, sound[1], "tracks", f"{missing.name}, which its log names, is missing")
    checked = check(command, store)
    assert checked.returncode == 2
    assert checked.stdout.splitlines()[0] == f"{store}/tracks: {missing.name}, which its log names, is missing"
    assert "restore" in checked.stdout.splitlines()[-1]


@pytest.mark.integration
def test_a_truncated_data_file_is_refused(store, sound, cli):
    """A data file cut short (the size its add action says is not the size it has): refused."""
    cut = data_file(store, "current")
    size = cut.stat().st_size
    cut.write_bytes(cut.read_bytes()[:size // 2])
    refused(cli, store, sound[1], "current", f"{cut.name} is {size // 2} bytes, its log says {size}")


@pytest.mark.integration
def test_a_sound_store_checks_clean(store, sound, cli, command):
    """The store as the run wrote it: check exits 0 and counts the tables' files; the next run skips."""
    checked = check(command, store)
    assert (checked.returncode, checked.stdout, checked.stderr) == (
        0, f"{store}: {len(TABLES)} tables, 4 files, no damage\n", "")
    again = cli("--input", sound[1], "--output", str(store))
    assert again.returncode == 0, again.stderr
    assert "1 listed, 1 skipped, 0 tagged" in again.stdout


@pytest.mark.integration
def test_check_refuses_what_is_not_a_store(tmp_path, command):
    checked = command(store_command.main, "check", str(tmp_path))
    assert (checked.returncode, checked.stdout) == (2, "")
    assert checked.stderr == (f"musicnn-beam store: error: {tmp_path} is not a store: it holds none of its "
                              f"tables ({', '.join(TABLES)})\n")


@pytest.mark.integration
def test_only_log_entries_since_the_checkpoint_are_read_and_a_gap_is_damage(store, command):
    """Entries a checkpoint covers are not what deltalake reads: damage there is no damage. An entry
    missing from the sequence after it is."""
    from deltalake import DeltaTable

    entry = newest_entry(store, "current")
    DeltaTable(str(store / "current")).create_checkpoint()
    entry.write_text(entry.read_text().replace('{"add":', '{"adx":'))
    assert check(command, store).returncode == 0
    first = sorted((store / "runs" / "_delta_log").glob("*.json"))[0]
    first.unlink()
    checked = check(command, store)
    assert checked.returncode == 2
    assert checked.stdout.splitlines()[0] == f"{store}/runs: _delta_log/{first.name} is missing"
