"""The progress line of a run on this machine: inputs done of listed, audio hours tagged, the
audio-seconds per second, errors so far and an estimate of the time left. On a terminal it is
redrawn every second; anywhere else (cron, CI, Airflow's task log) one line is printed every 30 s.

The counts come from the workers' tally files (transforms.tally); runs on remote runners show the
same figures as Beam metrics in their own UIs.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import Callable, Optional, TextIO

from musicnn_beam.transforms.tally import Tally, read_folder

REDRAW_S = 1.0
LOG_EVERY_S = 30.0


def duration_text(seconds: float) -> str:
    """3725 -> '1h02m05s', 65 -> '1m05s', 7 -> '7s'."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def progress_line(tally: Tally, elapsed_s: float, tagging_s: Optional[float]) -> str:
    """One line from the run's counts, e.g. "8/11 inputs (3 skipped), 0.04 audio h, 104 audio-s/s,
    1 error, ETA 30s [1m05s]". elapsed_s: since the launch; tagging_s: since the inputs were listed
    (None: still listing), what the rate and the estimate are taken over."""
    clock = f" [{duration_text(elapsed_s)}]"
    if tagging_s is None or tally.listed == 0:
        return "listing the inputs, reading the store" + clock
    parts = [f"{tally.done}/{tally.listed} inputs" + (f" ({tally.skipped} skipped)" if tally.skipped else ""),
             f"{tally.audio_s / 3600:.2f} audio h"]
    if tagging_s > 0 and tally.audio_s > 0:
        parts.append(f"{tally.audio_s / tagging_s:,.0f} audio-s/s")
    parts.append(f"{tally.failed} error" + ("" if tally.failed == 1 else "s"))
    remaining, opened = tally.listed - tally.done, tally.tagged + tally.failed
    if remaining <= 0:
        parts.append("writing the tables")
    elif opened and tagging_s > 0:
        parts.append(f"ETA {duration_text(remaining * tagging_s / opened)}")
    return ", ".join(parts) + clock


class ProgressLine:
    """Shows the progress of the run whose workers tally into FOLDER, while the `with` block runs."""

    def __init__(self, folder: str, prefix: str, stream: Optional[TextIO] = None,
                 clock: Callable[[], float] = time.monotonic, live: Optional[bool] = None):
        self.folder = folder
        self.prefix = prefix
        self.stream = sys.stderr if stream is None else stream  # the one of now, not of the import
        self.clock = clock
        self.live = self.stream.isatty() if live is None else live
        self.started = clock()
        self.listed_at: Optional[float] = None
        self.last_logged = self.started
        self.drawn = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="musicnn-beam-progress", daemon=True)

    def __enter__(self) -> "ProgressLine":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        if self.drawn:
            self.stream.write("\r\x1b[K")  # the summary line takes its place
            self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(REDRAW_S):
            self.tick()

    def tick(self) -> None:
        """Read the counts; redraw the line (a terminal) or log it when LOG_EVERY_S has passed."""
        now = self.clock()
        tally = read_folder(self.folder)
        if tally.listed and self.listed_at is None:
            self.listed_at = now
        line = progress_line(tally, now - self.started, None if self.listed_at is None else now - self.listed_at)
        if self.live:
            width = shutil.get_terminal_size().columns - 1  # a wrapped line could not be redrawn in place
            self.stream.write(f"\r{(self.prefix + line)[:width]}\x1b[K")
            self.drawn = True
        elif now - self.last_logged >= LOG_EVERY_S:
            self.stream.write(f"{self.prefix}{line}\n")
            self.last_logged = now
        else:
            return
        self.stream.flush()
