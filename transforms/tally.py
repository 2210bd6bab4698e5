"""What a run has done so far, counted where it happens: as Beam metrics (namespace `musicnn_beam`,
shown by Dataflow's job page and Flink's web UI, and queried from the pipeline result), and, for a
run on this machine, in a small file per worker process that the launcher reads for its progress
line (pipeline.progress): Beam's local runner reports metrics only when the run ends.

    counters:      inputs listed, inputs skipped, tracks tagged, tracks failed, audio ms tagged,
                   `error: KIND` per error kind, and the plan's `plan: new` ... (pipeline.graph)
    distributions: track audio ms (one value per tagged track), extract ms per track (read + decode
                   + mel, one value per input opened)
"""
from __future__ import annotations

import functools
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Optional

from apache_beam.metrics import Metrics

NAMESPACE = "musicnn_beam"
# Workers rewrite their file at most this often: a tally file is a few hundred bytes.
WRITE_EVERY_S = 0.5


@dataclass
class Tally:
    """Counts of one worker process (or, summed, of the run)."""

    listed: int = 0
    skipped: int = 0
    tagged: int = 0
    failed: int = 0
    audio_s: float = 0.0

    def __add__(self, other: "Tally") -> "Tally":
        return Tally(self.listed + other.listed, self.skipped + other.skipped, self.tagged + other.tagged,
                     self.failed + other.failed, self.audio_s + other.audio_s)

    @property
    def done(self) -> int:
        return self.skipped + self.tagged + self.failed


@functools.lru_cache(maxsize=None)
def counter(name: str):
    return Metrics.counter(NAMESPACE, name)


@functools.lru_cache(maxsize=None)
def distribution(name: str):
    return Metrics.distribution(NAMESPACE, name)


class _ProcessTally:
    """This process's counts for one run. A thread writes them to FOLDER/PID.json (atomically) every
    WRITE_EVERY_S while they change, and stops when the launcher removes the folder."""

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, f"{os.getpid()}.json")
        self.tally = Tally()
        self.lock = threading.Lock()
        self.changed = threading.Event()
        threading.Thread(target=self._write_while_running, name="musicnn-beam-tally", daemon=True).start()

    def add(self, **increments) -> None:
        with self.lock:
            for name, value in increments.items():
                setattr(self.tally, name, getattr(self.tally, name) + value)
        self.changed.set()

    def _write_while_running(self) -> None:
        while os.path.isdir(self.folder):
            if self.changed.wait(WRITE_EVERY_S):
                self.changed.clear()
                with self.lock:
                    counts = json.dumps(asdict(self.tally))
                temporary = f"{self.path}.tmp"
                try:
                    with open(temporary, "w") as f:
                        f.write(counts)
                    os.replace(temporary, self.path)
                except OSError:
                    return  # the folder is gone: the run is over (the metrics still count)
                time.sleep(WRITE_EVERY_S)


_process_tallies: dict[str, _ProcessTally] = {}
_process_tallies_lock = threading.Lock()


def _process_tally(folder: str) -> _ProcessTally:
    with _process_tallies_lock:
        key = f"{os.getpid()}:{folder}"  # a forked worker starts afresh
        if key not in _process_tallies:
            _process_tallies[key] = _ProcessTally(folder)
        return _process_tallies[key]


@dataclass(frozen=True)
class RunTally:
    """Counts the run's progress: picklable (it travels with the transforms), the folder is the
    launcher's progress folder on this machine, or None (a remote runner: metrics only)."""

    folder: Optional[str] = None

    def _local(self, **increments) -> None:
        if self.folder:
            _process_tally(self.folder).add(**increments)

    def listed(self, skipped: bool) -> None:
        counter("inputs listed").inc()
        if skipped:
            counter("inputs skipped").inc()
        self._local(listed=1, skipped=int(skipped))

    def tagged(self, duration_s: float) -> None:
        counter("tracks tagged").inc()
        audio_ms = round(duration_s * 1000)
        counter("audio ms tagged").inc(audio_ms)
        distribution("track audio ms").update(audio_ms)
        self._local(tagged=1, audio_s=duration_s)

    def failed(self, kind: str) -> None:
        counter("tracks failed").inc()
        counter(f"error: {kind}").inc()
        self._local(failed=1)


def read_folder(folder: str) -> Tally:
    """The run's counts so far: the sum of its worker processes' files."""
    total = Tally()
    try:
        names = os.listdir(folder)
    except OSError:
        return total
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name)) as f:
                total = total + Tally(**json.load(f))
        except (OSError, ValueError, TypeError):
            continue  # being replaced, or not ours
    return total
