"""A local run's first files, decoded while the launcher is still starting up.

On the in-process runner the worker is the launcher's own process, and its first seconds go to
importing TensorFlow, loading the model and building the pipeline: Python on one core, the others
idle. Decoding needs none of that. So the launcher lists the inputs, takes the first files the run
will tag (the run's own plan, store.plan) and decodes them in decoder processes meanwhile, each
into a file of 16 kHz samples; the extract stage takes a file's samples from here (timed_extract ->
take) instead of decoding it again. The same decoder makes the same samples: nothing the run
writes changes.

Only where listing twice is cheap: local files and folders (a bucket's listing is left to the
pipeline), and a store whose `current` the launcher can read in a moment (at most MAX_CURRENT_ROWS rows).
"""
from __future__ import annotations

import contextlib
import os
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from musicnn_beam.transforms.audio import AudioInfo
from musicnn_beam.transforms.decoder_pipe import DecodeRequest
from musicnn_beam.transforms.decoders import DecoderPool
from musicnn_beam.transforms.errors import TaggingError
from musicnn_beam.transforms.records import InputFile
from musicnn_beam.transforms.sources import expand_input, file_identity

MAX_FILES = 16
MAX_FILE_S = 600.0  # a longer file is left to the pipeline, which streams it
MAX_HELD_S = 3600.0  # audio decoded and not yet taken, all files together: 230 MB of 16 kHz float32 on disk
MAX_CURRENT_ROWS = 50_000
SAMPLES_PER_PUSH = 1 << 16


@dataclass
class Decoded:
    """A file decoded ahead: its samples in a file of raw float32, and its info or its error."""

    samples_path: str
    info: Optional[AudioInfo] = None
    error: Optional[TaggingError] = None

    def decode(self, request: DecodeRequest, on_chunk: Callable[[np.ndarray], None]) -> AudioInfo:
        """DecoderPool.decode of this file, from what its decoder wrote: the same samples, in order."""
        try:
            with open(self.samples_path, "rb") as f:
                while (chunk := np.fromfile(f, np.float32, SAMPLES_PER_PUSH)).size:
                    on_chunk(chunk)
        finally:
            self.discard()
        if self.error is not None:
            raise self.error
        return self.info

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.samples_path)


class DecodeAhead:
    """Decodes files submitted (in order) in `processes` decoder processes, each into a file of samples
    in `folder`; take() hands each to the worker."""

    def __init__(self, folder: str, sample_rate: int, max_duration_s: Optional[float], stall_timeout_s: float,
                 processes: int):
        self.folder = folder
        self.sample_rate = sample_rate
        self.max_duration_s = max_duration_s
        # Started here, in the launcher's main thread: a decoder dies with the thread that started it.
        self._decoders = DecoderPool(processes, stall_timeout_s=stall_timeout_s).start()
        self._threads = ThreadPoolExecutor(processes, thread_name_prefix="decode-ahead")
        self._pending: dict[tuple[str, Optional[str]], Future] = {}
        # Once the worker takes its first file its own decoders run: a file not started by then is its.
        self._worker_started = False
        self._held_s = 0.0
        self._lock = threading.Lock()

    def submit(self, files: Sequence[InputFile]) -> list[Future]:
        """Queue the first MAX_FILES of files; their decodings, in order. (Submitted after the worker
        started, they decode nothing: see _decode.)"""
        queued = [self._threads.submit(self._decode, file) for file in files[:MAX_FILES]]
        self._pending.update(((f.uri, f.version), future) for f, future in zip(files, queued))
        return queued

    def _decode(self, file: InputFile) -> Optional[Decoded]:
        with self._lock:
            if self._worker_started or self._held_s >= MAX_HELD_S:
                return None
        capped = self.max_duration_s is None or self.max_duration_s > MAX_FILE_S
        request = DecodeRequest(file.uri, self.sample_rate, MAX_FILE_S if capped else self.max_duration_s,
                                samples_to=os.path.join(self.folder, uuid.uuid4().hex))
        decoded = Decoded(request.samples_to)
        try:
            decoded.info = self._decoders.decode(request, lambda chunk: None)
        except TaggingError as error:
            if capped and error.kind == "TooLong":
                decoded.discard()
                return None  # past our cap, not the run's limit
            decoded.error = error
        with self._lock:
            self._held_s += decoded.info.duration_s if decoded.info else 0.0
        return decoded

    def take(self, file: InputFile) -> Optional[Decoded]:
        """The file's decoding, waiting for it if it is under way; None when it was not decoded ahead
        (or not started yet: then it never will be, the worker decodes it, and from now on no
        further file starts here)."""
        self._worker_started = True
        future = self._pending.pop((file.uri, file.version), None)
        if future is None or future.cancel():
            return None
        decoded = future.result()
        if decoded is not None and decoded.info is not None:
            with self._lock:
                self._held_s -= decoded.info.duration_s
        return decoded

    def close(self) -> None:
        self._pending.clear()
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._decoders.close()  # a decoder busy with a file stops once it is done with it


_RUNNING: Optional[DecodeAhead] = None


def start(folder: str, patterns: Sequence[str], current_rows: Callable[[], Optional[list[dict]]],
          will_tag: Callable, sample_rate: int, max_duration_s: Optional[float], stall_timeout_s: float) -> None:
    """Begin decoding ahead the first files the run will tag, listed and decided on a thread of its
    own. folder: where the samples wait (removed with the run's temporary files); patterns: the run's
    local inputs; current_rows: the store's `current` rows for this model (None: too many to read here);
    will_tag: (InputFile, its `current` rows) -> whether the run tags it."""
    global _RUNNING
    ahead = DecodeAhead(folder, sample_rate, max_duration_s, stall_timeout_s, processes=max(1, (os.cpu_count() or 1) - 1))
    _RUNNING = ahead

    def plan() -> None:
        try:
            ahead.submit(files_to_decode(patterns, current_rows, will_tag))
        except Exception:  # noqa: BLE001 - what the listing or the store raises, the pipeline's own listing reports
            pass

    threading.Thread(target=plan, name="decode-ahead-plan", daemon=True).start()


def files_to_decode(patterns: Sequence[str], current_rows: Callable[[], Optional[list[dict]]],
                    will_tag: Callable) -> list[InputFile]:
    """The first MAX_FILES files the patterns list that the run will tag (see start)."""
    rows = current_rows()
    if rows is None:
        return []
    by_file: dict[str, list[dict]] = {}
    for row in rows:
        by_file.setdefault(file_identity(row["uri"]), []).append(row)
    chosen: list[InputFile] = []
    for pattern in patterns:
        for file in expand_input(pattern):
            if len(chosen) == MAX_FILES:
                return chosen
            if will_tag(file, by_file.get(file_identity(file.uri), [])):
                chosen.append(file)
    return chosen


def take(file: InputFile) -> Optional[Decoded]:
    """A file this process decoded ahead (see DecodeAhead.take), or None."""
    return _RUNNING.take(file) if _RUNNING is not None else None


def stop() -> None:
    """End what start() began: what no worker took is dropped, the decoders stop."""
    global _RUNNING
    ahead, _RUNNING = _RUNNING, None
    if ahead is not None:
        ahead.close()
