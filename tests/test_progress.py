"""What a run shows while it runs: the workers' tally files, the progress line (redrawn on a terminal,
every 30 s elsewhere) and the run's Beam metrics, read from the pipeline's result."""
from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicnn_beam.pipeline.progress import ProgressLine, duration_text, progress_line
from tests.conftest import make_audio
from musicnn_beam.transforms import tally
from musicnn_beam.transforms.tally import RunTally, Tally, read_folder


@pytest.mark.unit
def test_duration_text():
    assert [duration_text(s) for s in (0, 7, 65, 3725)] == ["0s", "7s", "1m05s", "1h02m05s"]


@pytest.mark.unit
def test_the_line_while_listing_then_tagging_then_writing():
    assert progress_line(Tally(), 3.0, None) == "listing the inputs, reading the store [3s]"
    line = progress_line(Tally(listed=100, skipped=60, tagged=9, failed=1, audio_s=1800.0), 75.0, 60.0)
    # 30 inputs left at 10 opened per 60 s: 180 s
    assert line == "70/100 inputs (60 skipped), 0.50 audio h, 30 audio-s/s, 1 error, ETA 3m00s [1m15s]"
    assert progress_line(Tally(listed=2, tagged=2, audio_s=10.0), 9.0, 5.0) == \
        "2/2 inputs, 0.00 audio h, 2 audio-s/s, 0 errors, writing the tables [9s]"


@pytest.mark.unit
def test_workers_tallies_are_summed_from_their_files(tmp_path):
    (tmp_path / "11.json").write_text('{"listed": 3, "skipped": 1, "tagged": 1, "failed": 0, "audio_s": 2.5}')
    (tmp_path / "12.json").write_text('{"listed": 2, "skipped": 0, "tagged": 1, "failed": 1, "audio_s": 1.5}')
    (tmp_path / "13.json.tmp").write_text('{"listed": 100')  # being written: not read
    (tmp_path / "14.json").write_text("{")  # torn: skipped
    assert read_folder(str(tmp_path)) == Tally(listed=5, skipped=1, tagged=2, failed=1, audio_s=4.0)
    assert read_folder(str(tmp_path / "gone")) == Tally()


@pytest.mark.unit
def test_a_tally_writes_this_processes_counts_and_stops_when_the_folder_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(tally, "WRITE_EVERY_S", 0.01)
    counts = RunTally(str(tmp_path))
    counts.listed(skipped=True)
    counts.listed(skipped=False)
    counts.tagged(3.25)
    counts.failed("Corrupt")
    deadline = time.monotonic() + 5
    while read_folder(str(tmp_path)).done < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert read_folder(str(tmp_path)) == Tally(listed=2, skipped=1, tagged=1, failed=1, audio_s=3.25)
    assert os.listdir(tmp_path) == [f"{os.getpid()}.json"]


@pytest.mark.unit
def test_a_progress_folder_that_workers_still_write_into_is_removed(tmp_path, monkeypatch):
    """The launcher removes the folder while a worker's tally thread is still writing into it: a write
    between emptying the folder and removing it used to leave both behind."""
    import tempfile
    import threading

    from musicnn_beam.pipeline.temp_files import remove_local_temp

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(tally, "WRITE_EVERY_S", 0.0)
    for round_ in range(40):
        folder = tmp_path / f"musicnn-beam-test-{round_}-progress-x"
        folder.mkdir()
        counts, stop = RunTally(str(folder)), threading.Event()

        def count_while_removed() -> None:
            while not stop.is_set():
                counts.tagged(1.0)

        counting = threading.Thread(target=count_while_removed)
        counting.start()
        try:
            while not list(folder.glob("*.json")):
                time.sleep(0.001)
            remove_local_temp(f"musicnn-beam-test-{round_}")
        finally:
            stop.set()
            counting.join()
        time.sleep(0.01)
        assert list(tmp_path.iterdir()) == [], f"left behind in round {round_}"


@pytest.mark.integration
def test_a_run_spares_the_temporary_files_of_a_run_still_running_on_its_output(tmp_path, monkeypatch):
    """A run removes what killed runs on its output left in TMPDIR, not the files of a run on the same
    output that is still running: a second run started meanwhile removed the first one's samples
    decoded ahead, and the first failed on them (tests/test_catalogue_store.py, two runs at once)."""
    import tempfile

    from musicnn_beam.pipeline.temp_files import local_temp_prefix, new_run_tag, remove_local_temp

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    prefix = local_temp_prefix("store")
    ended = subprocess.Popen(["true"])
    ended.wait()
    running = tmp_path / f"{new_run_tag('store')}-decoded-x"  # this process's own run
    killed = tmp_path / f"{prefix}{ended.pid}-0123456789ab-decoded-y"
    unnamed = tmp_path / f"{prefix}0123456789ab0.address"  # a tag without a pid: no launcher to spare
    running.mkdir()
    killed.mkdir()
    unnamed.write_text("127.0.0.1:1")
    remove_local_temp(prefix, spare_running=True)
    assert running.exists() and not killed.exists() and not unnamed.exists()
    remove_local_temp(prefix)  # a run's own files, at its end
    assert list(tmp_path.iterdir()) == []


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.unit
def test_off_a_terminal_one_line_every_30_seconds(tmp_path):
    (tmp_path / "1.json").write_text('{"listed": 4, "skipped": 0, "tagged": 1, "failed": 0, "audio_s": 60.0}')
    clock, out = FakeClock(), io.StringIO()
    line = ProgressLine(str(tmp_path), prefix="musicnn-beam: ", stream=out, clock=clock, live=False)
    for _ in range(65):  # 65 s of ticks, one a second
        clock.now += 1
        line.tick()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("musicnn-beam: 1/4 inputs, 0.02 audio h") and lines[0].endswith("[30s]")
    assert lines[1].endswith("[1m00s]") and "\r" not in out.getvalue()


@pytest.mark.unit
def test_on_a_terminal_the_line_is_redrawn_then_cleared(tmp_path):
    (tmp_path / "1.json").write_text('{"listed": 4, "skipped": 0, "tagged": 1, "failed": 0, "audio_s": 60.0}')
    clock, out = FakeClock(), io.StringIO()
    with ProgressLine(str(tmp_path), prefix="p: ", stream=out, clock=clock, live=True) as line:
        for _ in range(3):
            clock.now += 1
            line.tick()
    drawn = out.getvalue().split("\r")
    # The rate and the estimate are taken from the moment the inputs were listed (the first tick).
    assert drawn[1:4] == ["p: 1/4 inputs, 0.02 audio h, 0 errors [1s]\x1b[K",
                          "p: 1/4 inputs, 0.02 audio h, 60 audio-s/s, 0 errors, ETA 3s [2s]\x1b[K",
                          "p: 1/4 inputs, 0.02 audio h, 30 audio-s/s, 0 errors, ETA 6s [3s]\x1b[K"]
    assert drawn[-1] == "\x1b[K"  # cleared for the summary line


def small_catalogue(root: Path) -> Path:
    root.mkdir(parents=True)
    make_audio(root, "a.mp3", 31, 4.0, 44100, 2, "mp3")
    make_audio(root, "b.flac", 32, 3.5, 22050, 1, "flac")
    make_audio(root, "c.wav", 33, 2.5, 16000, 1, "wav16")
    (root / "x.mp3").write_bytes(b"not audio")
    return root


@pytest.mark.integration
@pytest.mark.usefixtures("converted_models")
def test_the_runs_metrics_are_read_from_the_pipeline_result(tmp_path):
    """The figures of the progress line are Beam metrics in the musicnn_beam namespace (what Dataflow's
    job page and Flink's UI show), and they agree with the store's rows."""
    from apache_beam.metrics.metric import MetricsFilter

    from musicnn_beam.pipeline.cli import run
    from tests.conftest import clear_fsspec_caches
    from musicnn_beam.store.read import read_table

    def metrics(result) -> tuple[dict, dict]:
        found = result.metrics().query(MetricsFilter().with_namespace(tally.NAMESPACE))
        return ({c.key.metric.name: c.committed for c in found["counters"]},
                {d.key.metric.name: d.committed for d in found["distributions"]})

    music, output = small_catalogue(tmp_path / "music"), str(tmp_path / "store")
    clear_fsspec_caches()
    first = run(["--input", str(music), "--output", output])
    counters, distributions = metrics(first.result)
    tracks = read_table(output, "tracks").to_pylist()
    audio_ms = sum(round(t["duration_s"] * 1000) for t in tracks)
    print("\nfirst run's counters:", dict(sorted(counters.items())))
    print("first run's distributions:", {k: (d.count, d.sum, d.min, d.max) for k, d in sorted(distributions.items())})
    assert len(tracks) == 3
    assert counters["inputs listed"] == 4 and counters["plan: new"] == 4
    assert counters["tracks tagged"] == 3 and counters["tracks failed"] == 1 and counters["error: NotAudio"] == 1
    assert counters["audio ms tagged"] == audio_ms
    assert "inputs skipped" not in counters
    per_track = distributions["track audio ms"]
    assert (per_track.count, per_track.sum) == (3, audio_ms)
    assert per_track.min == min(round(t["duration_s"] * 1000) for t in tracks)
    assert distributions["extract ms per track"].count == 4  # every file opened, the broken one too
    assert distributions["extract ms per track"].max > 0  # a file decoded ahead with an error is taken in 0 ms

    make_audio(music, "d.wav", 34, 3.0, 16000, 1, "wav16")
    clear_fsspec_caches()
    counters, distributions = metrics(run(["--input", str(music), "--output", output]).result)
    print("second run's counters:", dict(sorted(counters.items())))
    assert counters["inputs listed"] == 5 and counters["inputs skipped"] == 4 and counters["tracks tagged"] == 1
    assert distributions["extract ms per track"].count == 1


def read_terminal(fd: int, process: subprocess.Popen, timeout_s: float) -> bytes:
    received, deadline = b"", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            received += chunk
        elif process.poll() is not None:
            break
    return received


@pytest.mark.e2e
@pytest.mark.usefixtures("converted_models")
def test_a_run_on_a_terminal_shows_a_live_progress_line(tmp_path):
    """The CLI in a pseudo-terminal: the line is redrawn in place (carriage returns), counts up to every
    input, and is cleared before the summary."""
    music = tmp_path / "music"
    music.mkdir()
    for i in range(6):
        make_audio(music, f"t{i}.flac", 40 + i, 20.0, 22050, 1, "flac")
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "musicnn_beam.pipeline", "--input", str(music), "--output",
                                str(tmp_path / "store")], stdin=subprocess.DEVNULL, stdout=follower,
                               stderr=follower, close_fds=True)
    os.close(follower)
    try:
        screen = read_terminal(leader, process, timeout_s=300).decode(errors="replace")
        assert process.wait(timeout=60) == 0, screen[-3000:]
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    drawn = re.findall(r"\rmusicnn-beam: ([^\r\n]*?)\x1b\[K", screen)
    print("\nthe line as drawn:", *drawn, sep="\n  ")
    inputs = [tuple(map(int, m.groups())) for m in (re.match(r"(\d+)/(\d+) inputs", d) for d in drawn) if m]
    assert inputs, screen[-3000:]
    assert all(total == 6 for _, total in inputs)
    assert [done for done, _ in inputs] == sorted(done for done, _ in inputs)
    assert "\r\x1b[Kmusicnn-beam: run " in screen  # cleared, then the summary
    assert re.search(r"musicnn-beam: run \S+ finished in .*6 listed, 0 skipped, 6 tagged", screen)
